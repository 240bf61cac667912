"""What the sample holds: domains, dates, the planted problem kinds and how each is handled, the file plan."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

DEFAULT_SEED = 20261004
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"

LANDING_PREFIX = "landing"
FEEDBACK_DOMAIN = "feedback"
DOMAINS = ("legal", "medical", "finance", "customer_service", "product_reviews")
SUPPORTED_SUFFIXES = (".jsonl", ".csv", ".parquet")

# Airflow @weekly intervals start on Sundays; 2026-10-04 is a Sunday. The sample ends with two
# days of an incomplete fifth week so that "only complete intervals are processed" is testable.
FIRST_WEEK_START = date(2026, 10, 4)
LAST_ARRIVAL_DATE = date(2026, 11, 2)

MANIFEST_NAME = "MANIFEST.json"
README_NAME = "README.md"
EVALUATION_PREFIX = "evaluation"
# Public evaluation examples per domain (disjoint from every landing record): what models are evaluated on.
EVALUATION_RECORDS = {"legal": 60, "medical": 60, "finance": 60, "customer_service": 60, "product_reviews": 100}
_MANAGED_NAMES = (LANDING_PREFIX, MANIFEST_NAME, README_NAME, EVALUATION_PREFIX)

_FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
_README_TEMPLATE = Path(__file__).resolve().parent / "README.template.md"
_TEMPLATED_DOMAINS = ("legal", "medical", "finance")
_TEMPLATED_RECORDS = {"legal": 450, "medical": 450, "finance": 450}
_REVIEWS_PER_LABEL = 1250
_REVIEW_MAX_CHARS = 300
_FEEDBACK_RECORDS = 150
_ID_PREFIX = {
    "legal": "LG",
    "medical": "MD",
    "finance": "FN",
    "customer_service": "CS",
    "product_reviews": "PR",
}
_BASE_COLUMNS = ("id", "text", "label", "created_at", "language")
_DIALOGUE_COLUMNS = ("question", "answer")
# A CSV export from a system that names the columns differently: the reader finds no `text`.
_WRONG_COLUMN_NAMES = {"text": "body", "label": "category"}
# Characters that str.splitlines() treats as line breaks but JSON leaves unescaped; a record
# holding one would look like two lines to a careless reader, which is not a problem we plant.
_LINE_BREAK_LOOKALIKES = ("\x85", "\u2028", "\u2029")
_UNDECODABLE_BYTES = b"\xff\xfe\xff"
_UNDECODABLE_SENTINEL = "@@UNDECODABLE@@"

# Problem kinds, as written in MANIFEST.json and README.md.
EXACT_DUPLICATE = "exact_duplicate"
NORMALIZED_DUPLICATE = "normalized_duplicate"
DISTINCT_NEAR_DUPLICATE = "distinct_near_duplicate"
TRUNCATED_LINE = "truncated_line"
NOT_AN_OBJECT = "not_an_object"
EMPTY_TEXT = "empty_text"
BLANK_TEXT = "blank_text"
MISSING_TEXT = "missing_text"
NON_STRING_LABEL = "non_string_label"
INVALID_CREATED_AT = "invalid_created_at"
UNDECODABLE_BYTES = "undecodable_bytes"
MISSING_TEXT_COLUMN = "missing_text_column"
NOT_PARQUET = "not_parquet"
UNSUPPORTED_EXTENSION = "unsupported_extension"
INVALID_RATING = "invalid_rating"
MISSING_ANSWER = "missing_answer"

PROBLEM_KINDS = (
    EXACT_DUPLICATE,
    NORMALIZED_DUPLICATE,
    DISTINCT_NEAR_DUPLICATE,
    TRUNCATED_LINE,
    NOT_AN_OBJECT,
    EMPTY_TEXT,
    BLANK_TEXT,
    MISSING_TEXT,
    NON_STRING_LABEL,
    INVALID_CREATED_AT,
    UNDECODABLE_BYTES,
    MISSING_TEXT_COLUMN,
    NOT_PARQUET,
    UNSUPPORTED_EXTENSION,
    INVALID_RATING,
    MISSING_ANSWER,
)

_EXPECTED_HANDLING = {
    EXACT_DUPLICATE: "drop: same text as an earlier record (keep the first)",
    NORMALIZED_DUPLICATE: "drop: same text as an earlier record after normalization",
    DISTINCT_NEAR_DUPLICATE: "keep: differs from the earlier record by one word",
    TRUNCATED_LINE: "reject the line; keep the file's other records",
    NOT_AN_OBJECT: "reject the line (valid JSON, not an object)",
    EMPTY_TEXT: "reject the record (text is empty)",
    BLANK_TEXT: "reject the record (text is only whitespace)",
    MISSING_TEXT: "reject the record (no text field)",
    NON_STRING_LABEL: "reject the record (label is not a string)",
    INVALID_CREATED_AT: "reject the record (created_at is not an ISO-8601 timestamp)",
    UNDECODABLE_BYTES: "quarantine the file (neither UTF-8 nor GB18030)",
    MISSING_TEXT_COLUMN: "quarantine the file (CSV without a text column)",
    NOT_PARQUET: "quarantine the file (not a Parquet file)",
    UNSUPPORTED_EXTENSION: "quarantine or skip the file (unsupported extension)",
    INVALID_RATING: "reject the feedback record (rating outside 1..5)",
    MISSING_ANSWER: "reject the feedback record (no answer field)",
}


def normalize_text(text: str) -> str:
    """Return the normalized form that the sample's duplicate definitions refer to.

    NFKC (full-width letters, digits and punctuation become ASCII, U+3000 becomes a space), then
    every run of whitespace becomes one space and the ends are stripped. Case is kept.

    Args:
        text: Raw record text.

    Returns:
        The normalized text.
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def week_start(day: date) -> date:
    """Return the Sunday that starts the @weekly data interval containing ``day``."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


@dataclass(frozen=True)
class SampleProblem:
    """One deliberate problem planted in the sample.

    Attributes:
        kind: One of ``PROBLEM_KINDS``.
        key: Landing key of the file holding the problem.
        unit: ``"line"`` (1-based physical line of a JSONL file), ``"row"`` (1-based data row of a
            CSV or Parquet file, header excluded) or ``None`` when the whole file is the problem.
        number: The line or row number, ``None`` for a whole file.
        detail: What is wrong, in words.
        source_key: For duplicates, the file holding the earlier record.
        source_unit: ``"line"`` or ``"row"`` of the earlier record.
        source_number: Its line or row number.
    """

    kind: str
    key: str
    unit: str | None
    number: int | None
    detail: str
    source_key: str | None = None
    source_unit: str | None = None
    source_number: int | None = None

    @property
    def location(self) -> str:
        """``"line 7"``, ``"row 3"`` or ``"whole file"``."""
        return "whole file" if self.unit is None else f"{self.unit} {self.number}"

    @property
    def source_location(self) -> str | None:
        """Location of the earlier record, for duplicates."""
        return None if self.source_unit is None else f"{self.source_unit} {self.source_number}"


@dataclass(frozen=True)
class SampleSummary:
    """What ``build_sample`` wrote.

    Attributes:
        out_dir: The sample folder.
        files: Landing keys written, sorted (relative to ``out_dir``).
        records_per_domain: Records per domain (``feedback`` included), all weeks.
        records_per_week: Records per week start date (``YYYY-MM-DD``), all domains.
        records_per_domain_week: Records per domain, then per week start date.
        complete_weeks: Start dates of the @weekly intervals that are complete in the sample.
        problems: The deliberate problems, in README order.
    """

    out_dir: Path
    files: tuple[str, ...]
    records_per_domain: Mapping[str, int]
    records_per_week: Mapping[str, int]
    records_per_domain_week: Mapping[str, Mapping[str, int]]
    complete_weeks: tuple[str, ...]
    problems: tuple[SampleProblem, ...]


@dataclass(frozen=True)
class _FileSpec:
    """One landing file of the plan."""

    domain: str
    arrival: str
    name: str
    encoding: str = "utf-8"
    weight: float = 1.0
    role: str = "records"  # records | wrong_columns | not_parquet | unsupported
    omit: tuple[str, ...] = ()
    created_at_style: str = "z"  # "z": 2026-10-05T09:12:00Z, "offset": ...+00:00

    def __post_init__(self) -> None:
        date.fromisoformat(self.arrival)
        if self.role not in ("records", "wrong_columns", "not_parquet", "unsupported"):
            raise ValueError(f"unknown role {self.role!r} for {self.key}")

    @property
    def key(self) -> str:
        return f"{LANDING_PREFIX}/{self.domain}/{self.arrival}/{self.name}"

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def holds_records(self) -> bool:
        return self.role in ("records", "wrong_columns")


def _plan() -> tuple[_FileSpec, ...]:
    """The fixed file plan: which files arrive when, in which format and encoding."""
    f = _FileSpec
    return (
        # legal: 3 + 2 + 3 + 3 files over the complete weeks, one in the incomplete week.
        f("legal", "2026-10-05", "batch-01.jsonl"),
        f("legal", "2026-10-06", "batch-01.jsonl"),
        f("legal", "2026-10-08", "batch-01.csv"),
        f("legal", "2026-10-12", "batch-01.jsonl"),
        f("legal", "2026-10-14", "batch-01.parquet"),
        f("legal", "2026-10-19", "batch-01.jsonl"),
        f("legal", "2026-10-21", "batch-01.jsonl"),
        f("legal", "2026-10-23", "batch-01.jsonl", omit=("label",)),
        f("legal", "2026-10-26", "batch-01.jsonl", omit=("id",)),
        f("legal", "2026-10-28", "batch-01.jsonl"),
        f("legal", "2026-10-28", "notes.txt", weight=0.0, role="unsupported"),
        f("legal", "2026-10-30", "batch-01.csv"),
        f("legal", "2026-11-02", "batch-01.jsonl", weight=0.4),
        # medical
        f("medical", "2026-10-04", "batch-01.jsonl"),
        f("medical", "2026-10-07", "batch-01.jsonl"),
        f("medical", "2026-10-09", "batch-01.jsonl"),
        f("medical", "2026-10-11", "batch-01.jsonl"),
        f("medical", "2026-10-13", "batch-01.csv"),
        f("medical", "2026-10-16", "batch-01.jsonl"),
        f("medical", "2026-10-20", "batch-01.parquet"),
        f("medical", "2026-10-22", "batch-01.jsonl"),
        f("medical", "2026-10-25", "batch-01.jsonl"),
        f("medical", "2026-10-27", "batch-01.parquet", weight=0.0, role="not_parquet"),
        f("medical", "2026-10-29", "batch-01.jsonl", omit=("label",)),
        f("medical", "2026-10-31", "batch-01.jsonl"),
        f("medical", "2026-11-01", "batch-01.jsonl", weight=0.4),
        # finance
        f("finance", "2026-10-05", "batch-01.parquet", created_at_style="offset"),
        f("finance", "2026-10-08", "batch-01.jsonl"),
        f("finance", "2026-10-09", "batch-01.jsonl"),
        f("finance", "2026-10-12", "batch-01.jsonl"),
        f("finance", "2026-10-15", "batch-01.jsonl"),
        f("finance", "2026-10-18", "batch-01.jsonl"),
        f("finance", "2026-10-19", "batch-01.csv", weight=0.5, role="wrong_columns"),
        f("finance", "2026-10-21", "batch-01.jsonl", omit=("label",)),
        f("finance", "2026-10-24", "batch-01.csv"),
        f("finance", "2026-10-26", "batch-01.jsonl"),
        f("finance", "2026-10-30", "batch-01.jsonl"),
        f("finance", "2026-11-02", "batch-01.jsonl", weight=0.4),
        # customer_service
        f("customer_service", "2026-10-04", "batch-01.jsonl"),
        f("customer_service", "2026-10-06", "batch-01.jsonl"),
        f("customer_service", "2026-10-06", "batch-02.jsonl", weight=0.5),
        f("customer_service", "2026-10-09", "batch-01.jsonl"),
        f("customer_service", "2026-10-12", "batch-01.jsonl"),
        f("customer_service", "2026-10-14", "batch-01.jsonl"),
        f("customer_service", "2026-10-17", "batch-01.parquet"),
        f("customer_service", "2026-10-18", "batch-01.jsonl"),
        f("customer_service", "2026-10-20", "batch-01.csv", encoding="gb18030"),
        f("customer_service", "2026-10-23", "batch-01.jsonl"),
        f("customer_service", "2026-10-26", "batch-01.jsonl"),
        f("customer_service", "2026-10-29", "batch-01.jsonl", weight=0.5),
        f("customer_service", "2026-10-31", "batch-01.jsonl", omit=("id",)),
        f("customer_service", "2026-11-01", "batch-01.jsonl", weight=0.4),
        f("customer_service", "2026-11-02", "batch-01.jsonl", weight=0.4),
        # product_reviews
        f("product_reviews", "2026-10-05", "batch-01.jsonl"),
        f("product_reviews", "2026-10-07", "batch-01.jsonl"),
        f("product_reviews", "2026-10-10", "batch-01.csv"),
        f("product_reviews", "2026-10-13", "batch-01.jsonl", encoding="gb18030"),
        f("product_reviews", "2026-10-15", "batch-01.jsonl", omit=("id",)),
        f("product_reviews", "2026-10-19", "batch-01.jsonl"),
        f("product_reviews", "2026-10-22", "batch-01.jsonl", omit=("label",)),
        f("product_reviews", "2026-10-24", "batch-01.parquet"),
        f("product_reviews", "2026-10-27", "batch-01.jsonl"),
        f("product_reviews", "2026-10-30", "batch-01.csv", encoding="gb18030"),
        f("product_reviews", "2026-11-02", "batch-01.jsonl", weight=0.4),
        # feedback on served answers, records carry their domain
        f(FEEDBACK_DOMAIN, "2026-10-05", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-08", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-12", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-15", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-19", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-22", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-26", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-10-29", "feedback-01.jsonl"),
        f(FEEDBACK_DOMAIN, "2026-11-01", "feedback-01.jsonl", weight=0.4),
    )
