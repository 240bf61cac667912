"""Standardize raw landing records into the curated record schema (``curated_record.schema.json``).

The JSON Schema is data; it is compiled once into Python code (fastjsonschema) because row-wise
``jsonschema`` is ~8x too slow for the ingest target. A record that fails is rejected with the
failing rule (``schema.<field>.<keyword>``).

Speed: the compiled validator alone runs at about the ingest target, so a ``files`` record is first
checked by ``_files_record_is_valid``, a hand-specialised check of exactly the record this module
builds, using the validator's own compiled patterns. It only ever says "valid" for a record the
schema accepts; anything else (and every feedback record) goes through the validator, which also
names the failing rule. The check is tied to the schema file's digest and switches itself off (with
a warning) if the schema changes, until someone reviews it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipelines.clean.text import detect_language
from pipelines.ingest.parse import RAW_SNIPPET, COLUMNS, Rejection, source_uri
from pipelines.privacy.records import hash_subject

SCHEMA_DIR = Path(__file__).resolve().parent
CURATED_SCHEMA_PATH = SCHEMA_DIR / "curated_record.schema.json"
FEEDBACK_SCHEMA_PATH = SCHEMA_DIR / "feedback_record.schema.json"

# Columns of a curated partition, in order (Parquet schema follows it).
CURATED_COLUMNS = (
    "id", "domain", "text", "label", "source", "source_uri", "arrival_date", "created_at", "language",
    "usage", "content_sha256", "question", "answer", "rating", "correction", "model_version", "request_id",
    "label_source", "label_confidence", "sensitive_flags", "subject_sha256",
)
# The curated schema the fast check below was written against (sha256 of the file's bytes).
_FAST_CHECK_SCHEMA_SHA256 = "48006537b5a65bfd9fa59edb939393353cd60cccd9fd73c294d4a3400ad31c2b"
log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def schema_version(path: Path = CURATED_SCHEMA_PATH) -> str:
    """The schema's ``$id`` (it carries the version) plus a digest of its bytes."""
    data = path.read_bytes()
    return f"{json.loads(data)['$id']}#sha256={hashlib.sha256(data).hexdigest()[:16]}"


@lru_cache(maxsize=None)
def _validator(path: Path) -> Callable[[dict], object]:
    import fastjsonschema

    return fastjsonschema.compile(json.loads(path.read_text(encoding="utf-8")))


def schema_error(record: dict, path: Path = CURATED_SCHEMA_PATH) -> tuple[str, str] | None:
    """Return ``(rule, message)`` for the first schema violation, or None if the record is valid."""
    import fastjsonschema

    try:
        _validator(path)(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        field_path = ".".join(str(p) for p in (exc.path or [])[1:]) or "record"
        return f"schema.{field_path}.{exc.rule}", exc.message
    return None


@lru_cache(maxsize=None)
def _fast_checks() -> tuple[Callable, Callable, Callable, Callable] | None:
    """The compiled patterns ``_files_record_is_valid`` needs, or None if the fast check is off.

    They are taken from the compiled validator itself (same regex, same ``match``/``search``), so the
    check cannot drift from the validator; the schema digest guards the rest (lengths, types, enums).
    """
    digest = hashlib.sha256(CURATED_SCHEMA_PATH.read_bytes()).hexdigest()
    if digest != _FAST_CHECK_SCHEMA_SHA256:
        log.warning("curated schema changed (sha256 %s): standardize fast check is off until "
                    "_files_record_is_valid is reviewed against it", digest[:16])
        return None
    properties = json.loads(CURATED_SCHEMA_PATH.read_text(encoding="utf-8"))["properties"]
    try:
        patterns = _validator(CURATED_SCHEMA_PATH).__globals__["REGEX_PATTERNS"]
        return (patterns[properties["id"]["pattern"]].search, patterns[properties["domain"]["pattern"]].search,
                patterns["date_re_pattern"].match, patterns["date-time_re_pattern"].match)
    except (AttributeError, KeyError, TypeError):  # another fastjsonschema layout: use the validator
        log.warning("fastjsonschema's compiled patterns not found: standardize fast check is off")
        return None


@lru_cache(maxsize=4096)
def _name_is_valid(value: str) -> bool:
    # domain and source share the schema pattern; a run has a handful of each.
    checks = _fast_checks()
    return checks is not None and checks[1](value) is not None


@lru_cache(maxsize=4096)
def _date_is_valid(value: str) -> bool:
    checks = _fast_checks()
    return checks is not None and checks[2](value) is not None


_LANGUAGES = ("zh", "en", "other")


def _files_record_is_valid(record: dict) -> bool:
    """True only if the curated schema accepts ``record``, a ``files`` record built by ``standardize_record``.

    Sufficient, not necessary: False means "ask the validator". ``required`` and ``additionalProperties``
    hold by construction (the key count is checked); every value is checked as the schema says, with
    ``type(x) is str`` (stricter than ``isinstance``).
    """
    checks = _fast_checks()
    if checks is None:
        return False
    id_search, _, _, datetime_match = checks
    record_id, text, label, created_at, language, domain, source, arrival = (
        record["id"], record["text"], record["label"], record["created_at"], record["language"],
        record["domain"], record["source"], record["arrival_date"])
    if not (type(record_id) is str and 0 < len(record_id) <= 128 and id_search(record_id) is not None):
        return False
    # The schema's text pattern is \S: some character that is not whitespace, i.e. not isspace().
    if not (type(text) is str and 0 < len(text) <= 100_000 and not text.isspace()):
        return False
    if not (label is None or (type(label) is str and 0 < len(label) <= 128)):
        return False
    if not (created_at is None or (type(created_at) is str and datetime_match(created_at) is not None)):
        return False
    if not (type(language) is str and language in _LANGUAGES):
        return False
    if not (type(domain) is str and type(source) is str and type(arrival) is str
            and _name_is_valid(domain) and _name_is_valid(source) and _date_is_valid(arrival)):
        return False
    if "question" in record:
        question, answer = record["question"], record["answer"]
        if not (question is None or (type(question) is str and len(question) <= 100_000)):
            return False
        if not (answer is None or (type(answer) is str and len(answer) <= 100_000)):
            return False
    subject = record.get("subject_sha256", "0" * 64)
    if not (type(subject) is str and len(subject) == 64 and _is_lower_hex(subject)):
        return False
    uri = record["source_uri"]
    return (record["usage"] == "train" and type(uri) is str and len(uri) > 0
            and len(record) - ("subject_sha256" in record) in (10, 12))


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class RawRecord:
    """A parsed record and where it came from (its position orders dedup: date, key, line)."""

    arrival_date: str
    key: str
    line: int
    source: str
    kind: str
    raw: dict


def _snippet(raw: dict) -> str:
    """The raw record as quarantined: without ``subject_id`` (only its hash is ever kept past landing)."""
    return json.dumps({k: v for k, v in raw.items() if k != "subject_id"}, ensure_ascii=False)[:RAW_SNIPPET]


def _derived_id(domain: str, uri: str) -> str:
    return f"{domain}-{hashlib.sha256(uri.encode()).hexdigest()[:20]}"


def _usage(rating: object, correction: object, *, train_min_rating: int, review_max_rating: int) -> str:
    if not isinstance(rating, int):
        return "hold"
    if correction or rating <= review_max_rating:
        return "review"
    return "train" if rating >= train_min_rating else "hold"


def standardize_record(
    item: RawRecord, *, domain: str, train_min_rating: int = 4, review_max_rating: int = 2
) -> dict | Rejection:
    """Map one raw record to the curated schema, or reject it with the failing rule."""
    raw = item.raw
    uri = source_uri(item.key, item.line)
    allowed = COLUMNS[item.kind][1]
    if not raw.keys() <= allowed:
        unknown = set(raw) - allowed
        return Rejection(uri, "standardize", "schema.record.additionalProperties",
                         f"unknown field(s) {sorted(unknown)}", _snippet(raw))
    if item.kind == "feedback":
        fb = dict(raw)
        if isinstance(fb.get("rating"), str) and fb["rating"].strip().isdigit():
            fb["rating"] = int(fb["rating"])  # CSV feedback
        fb.setdefault("correction", None)
        fb.setdefault("created_at", None)
        problem = schema_error(fb, FEEDBACK_SCHEMA_PATH)
        if problem:
            return Rejection(uri, "standardize", problem[0], problem[1], _snippet(raw))
        text = f"{fb['question']}\n{fb['answer']}"
        record = {
            "id": f"fb-{fb['request_id']}", "domain": domain, "text": text, "label": None,
            "source": item.source, "source_uri": uri, "arrival_date": item.arrival_date,
            "created_at": fb["created_at"], "language": detect_language(text),
            "usage": _usage(fb["rating"], fb["correction"], train_min_rating=train_min_rating,
                            review_max_rating=review_max_rating),
            "question": fb["question"], "answer": fb["answer"], "rating": fb["rating"],
            "correction": fb["correction"], "model_version": fb["model_version"], "request_id": fb["request_id"],
        }
    else:
        text = raw.get("text")
        record = {
            "id": raw["id"] if "id" in raw else _derived_id(domain, uri),
            "domain": domain, "text": text, "label": raw.get("label"), "source": item.source,
            "source_uri": uri, "arrival_date": item.arrival_date, "created_at": raw.get("created_at"),
            "language": raw.get("language") or (detect_language(text) if isinstance(text, str) else "other"),
            "usage": "train",
        }
        if "question" in raw or "answer" in raw:
            record["question"] = raw.get("question")
            record["answer"] = raw.get("answer")
        if "subject_id" in raw:
            # The privacy subject (a patient, a customer): only its per-domain hash is curated, never the id.
            subject = raw["subject_id"]
            if not isinstance(subject, str) or not subject.strip():
                return Rejection(uri, "standardize", "schema.subject_id.type", "subject_id must be a non-empty string",
                                 _snippet(raw))
            record["subject_sha256"] = hash_subject(subject.strip(), domain=domain).hex()
        if _files_record_is_valid(record):
            return record
    problem = schema_error(record)
    if problem:
        return Rejection(uri, "standardize", problem[0], problem[1], _snippet(raw))
    return record


def standardize_records(
    items: Iterable[RawRecord], *, domain: str, train_min_rating: int = 4, review_max_rating: int = 2
) -> Iterator[dict | Rejection]:
    """Standardize records in order (the order is kept: dedup depends on it)."""
    for item in items:
        yield standardize_record(item, domain=domain, train_min_rating=train_min_rating,
                                 review_max_rating=review_max_rating)


def to_row(record: dict) -> dict:
    """A record with every curated column present (None where absent), for Parquet."""
    return {c: record.get(c) for c in CURATED_COLUMNS}
