"""User feedback: the service remembers each request's question and answer for a while, and a rating
turns them into a feedback record in ``landing/feedback/<YYYY-MM-DD>/`` for the next weekly_ingest.

Records follow ``pipelines/standardize/feedback_record.schema.json``; question, answer and correction are
PII-masked (``pipelines.pii``, one token mapping per record) before they are written, and each record
is its own create-only object named by its request id, so a second rating of the same answer on the
same day is refused rather than double-counted.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipelines.storage import ObjectStore

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "standardize" / "feedback_record.schema.json"


class FeedbackError(ValueError):
    """A feedback record cannot be written; ``status`` is the HTTP code that fits."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Exchange:
    """What a request asked and what the service answered (raw: kept in memory only, never logged)."""

    request_id: str
    domain: str
    model_version: str
    question: str
    answer: str
    at: float

    def __repr__(self) -> str:  # never the texts
        return f"Exchange(request_id={self.request_id!r}, domain={self.domain!r}, version={self.model_version!r})"


class RequestLog:
    """Bounded memory of recent exchanges: least recently used out beyond ``max_entries``, expired after ``ttl``."""

    def __init__(self, *, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.clock = clock
        self._items: OrderedDict[str, Exchange] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, *, request_id: str, domain: str, model_version: str, question: str, answer: str) -> None:
        with self._lock:
            self._items[request_id] = Exchange(request_id, domain, model_version, question, answer, self.clock())
            self._items.move_to_end(request_id)
            self._expire()
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> Exchange | None:
        with self._lock:
            self._expire()
            item = self._items.get(request_id)
            if item is not None:
                self._items.move_to_end(request_id)
            return item

    def _expire(self) -> None:
        cutoff = self.clock() - self.ttl
        # Insertion order is refresh order only approximately (get() moves items), so scan from the old end.
        while self._items:
            key, item = next(iter(self._items.items()))
            if item.at >= cutoff:
                break
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


@lru_cache(maxsize=1)
def _validator():
    import fastjsonschema

    return fastjsonschema.compile(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def feedback_record(*, request_id: str, domain: str, model_version: str, question: str, answer: str, rating: int,
                    correction: str | None = None, created_at: dt.datetime | None = None) -> dict:
    """A schema-valid feedback record with question, answer and correction PII-masked.

    Raises:
        FeedbackError: the record does not satisfy the feedback schema (the message names the field).
    """
    from pipelines.pii import PiiMapping, mask_text

    created_at = created_at or dt.datetime.now(dt.timezone.utc)
    mapping = PiiMapping()  # one mapping per record: the answer can refer to the question's [PHONE_1]
    record = {
        "request_id": request_id,
        "domain": domain,
        "model_version": model_version,
        "question": mask_text(question, mapping=mapping),
        "answer": mask_text(answer, mapping=mapping),
        "rating": rating,
        "correction": mask_text(correction, mapping=mapping) if correction else None,
        "created_at": created_at.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    import fastjsonschema

    try:
        _validator()(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = exc.name.replace("data.", "", 1) if exc.name else "record"
        raise FeedbackError(f"feedback {field}: {exc.message.replace(exc.name or '', field)}") from None
    return record


def feedback_key(record: dict, *, landing_prefix: str = "landing") -> str:
    """``landing/feedback/<YYYY-MM-DD>/<request_id>.jsonl`` (the date is the record's UTC arrival date)."""
    day = record["created_at"][:10]
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in record["request_id"])
    return f"{landing_prefix}/feedback/{day}/{safe_id}.jsonl"


def write_feedback(store: ObjectStore, *, request_id: str, domain: str, model_version: str, question: str,
                   answer: str, rating: int, correction: str | None = None, created_at: dt.datetime | None = None,
                   landing_prefix: str = "landing") -> str:
    """Write one feedback record durably where weekly_ingest reads it (create-only).

    Args:
        store: the object store.
        request_id, domain, model_version, question, answer: the exchange rated (raw; masked here).
        rating: 1-5.
        correction: the user's better answer, if any (masked here).
        created_at: when the rating arrived (now by default); its UTC date names the landing folder.
        landing_prefix: ``storage.landing_prefix``.

    Returns:
        The key written.

    Raises:
        FeedbackError: an invalid record (422) or a request id already rated that day (409).
    """
    record = feedback_record(request_id=request_id, domain=domain, model_version=model_version, question=question,
                             answer=answer, rating=rating, correction=correction, created_at=created_at)
    key = feedback_key(record, landing_prefix=landing_prefix)
    body = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    if not store.put(key, body, if_none_match=True):
        raise FeedbackError(f"request {request_id} already has feedback", status=409)
    return key
