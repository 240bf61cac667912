"""Standardize raw landing records into the curated record schema (``curated_record.schema.json``).

The JSON Schema is data; it is compiled once into Python code (fastjsonschema) because row-wise
``jsonschema`` is ~8x too slow for the ingest target. A record that fails is rejected with the
failing rule (``schema.<field>.<keyword>``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipelines.ingest.parse import RAW_SNIPPET, COLUMNS, Rejection, source_uri

SCHEMA_DIR = Path(__file__).resolve().parent
CURATED_SCHEMA_PATH = SCHEMA_DIR / "curated_record.schema.json"
FEEDBACK_SCHEMA_PATH = SCHEMA_DIR / "feedback_record.schema.json"

# Columns of a curated partition, in order (Parquet schema follows it).
CURATED_COLUMNS = (
    "id", "domain", "text", "label", "source", "source_uri", "arrival_date", "created_at", "language",
    "usage", "content_sha256", "question", "answer", "rating", "correction", "model_version", "request_id",
)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


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


def detect_language(text: str) -> str:
    """A first cut: Chinese if CJK characters make up >= 20% of letters, English if Latin letters dominate."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk and cjk >= 0.2 * (cjk + latin):
        return "zh"
    if latin and latin >= 0.5 * len(text.replace(" ", "")):
        return "en"
    return "other"


@dataclass(frozen=True)
class RawRecord:
    """A parsed record and where it came from (its position orders dedup: date, key, line)."""

    arrival_date: str
    key: str
    line: int
    source: str
    kind: str
    raw: dict


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
    unknown = set(raw) - COLUMNS[item.kind][1]
    if unknown:
        return Rejection(uri, "standardize", "schema.record.additionalProperties",
                         f"unknown field(s) {sorted(unknown)}", json.dumps(raw, ensure_ascii=False)[:RAW_SNIPPET])
    if item.kind == "feedback":
        fb = dict(raw)
        if isinstance(fb.get("rating"), str) and fb["rating"].strip().isdigit():
            fb["rating"] = int(fb["rating"])  # CSV feedback
        fb.setdefault("correction", None)
        fb.setdefault("created_at", None)
        problem = schema_error(fb, FEEDBACK_SCHEMA_PATH)
        if problem:
            return Rejection(uri, "standardize", problem[0], problem[1], json.dumps(raw, ensure_ascii=False)[:RAW_SNIPPET])
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
    problem = schema_error(record)
    if problem:
        return Rejection(uri, "standardize", problem[0], problem[1], json.dumps(raw, ensure_ascii=False)[:RAW_SNIPPET])
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
