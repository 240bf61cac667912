"""Reviewers' answers: validated, create-only imports of a reviewed queue, and reviewed labels over predictions.

Layout, next to the queue (:mod:`pipelines.review.queue`)::

    <prefix>/<domain>/<interval>/reviews-<n>.jsonl           one per import, n = 1, 2, ... (create-only)

Reviewers fill ``review_label`` (one of the label set in the queue's meta file), ``reviewer`` and
optionally ``reviewed_at`` (ISO-8601; the import time if empty), in the JSONL or in the CSV that
:func:`pipelines.review.queue.export_queue` writes. Rows left without a ``review_label`` are "not
reviewed yet" and may be imported later. A reviews file holds one line per reviewed record: ``id``,
``predicted_label``, ``review_label``, ``reviewer``, ``reviewed_at``, ``queue``. When several reviews
files name the same id, the later one wins.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.review.queue import jsonl_bytes, partition_review_prefix, read_queue
from pipelines.storage import ObjectStore

REVIEW_FIELDS = ("id", "predicted_label", "review_label", "reviewer", "reviewed_at", "queue")
_REVIEWS_NAME = re.compile(r"^reviews-(\d+)\.jsonl$")
_MAX_ERRORS_SHOWN = 20


class ReviewImportError(ValueError):
    """A reviews file was refused; ``errors`` lists every problem found (with its line)."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = errors
        shown = "\n  ".join(errors[:_MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - _MAX_ERRORS_SHOWN} more" if len(errors) > _MAX_ERRORS_SHOWN else ""
        super().__init__(f"{source}: {len(errors)} problem(s), nothing was imported; fix them and import again:"
                         f"\n  {shown}{more}")


@dataclass(frozen=True)
class ReviewImport:
    """What an import did.

    Attributes:
        queue: the queue key the reviews belong to.
        reviews_key: the reviews file written, or the identical one already there; None if no row was reviewed.
        written: False when nothing new was written (no reviewed row, or the same reviews were imported before).
        reviewed: rows with a review label.
        unreviewed: rows left empty (still to review).
        agreed: reviewed rows whose review label equals the predicted one.
    """

    queue: str
    reviews_key: str | None
    written: bool
    reviewed: int
    unreviewed: int
    agreed: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ReviewStats:
    """How reviews changed a partition's labels.

    Attributes:
        rows: rows in the partition.
        reviewed: rows that have a review.
        share_reviewed: ``reviewed / rows`` (0.0 for an empty partition).
        agreed: reviewed rows whose predicted label equals the review label.
        agreement: ``agreed / reviewed``, or None when nothing was reviewed.
        unmatched_reviews: reviews whose id is not a row of the partition (ignored).
    """

    rows: int
    reviewed: int
    share_reviewed: float
    agreed: int
    agreement: float | None
    unmatched_reviews: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Importing a reviewed file


def _read_rows(path: Path) -> list[tuple[int, dict[str, object]]]:
    """``(line, row)`` pairs of a reviewed CSV or JSONL file."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")  # a spreadsheet saved on a Chinese-locale machine
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict[str, object]]] = []
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in ("id", "review_label", "reviewer") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewImportError(str(path), [f"header: missing column(s) {missing}; keep the exported header"])
        for row in reader:
            rows.append((reader.line_num, dict(row)))
        return rows
    if suffix not in (".jsonl", ".ndjson"):
        raise ValueError(f"{path}: use the .csv or .jsonl file that export wrote")
    errors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            errors.append(f"line {number}: not JSON ({exc})")
            continue
        if not isinstance(value, dict):
            errors.append(f"line {number}: a JSON {type(value).__name__}, expected an object")
            continue
        rows.append((number, value))
    if errors:
        raise ReviewImportError(str(path), errors)
    return rows


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _timestamp(value: str) -> str | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _review_signature(rows: Iterable[Mapping[str, object]]) -> list[tuple[str, str, str]]:
    return sorted((str(r["id"]), str(r["review_label"]), str(r["reviewer"])) for r in rows)


def _reviews_files(store: ObjectStore, folder: str) -> list[tuple[int, str]]:
    found = []
    for info in store.list(folder + "/"):
        match = _REVIEWS_NAME.match(info.key[len(folder) + 1:])
        if match:
            found.append((int(match.group(1)), info.key))
    return sorted(found)


def import_reviews(
    store: ObjectStore, key: str, in_path: str | Path, *, now: dt.datetime | None = None
) -> ReviewImport:
    """Validate a reviewed file and store its reviews as the partition's next ``reviews-<n>.jsonl``.

    Every problem is collected before anything is written: ids not in the queue (or repeated),
    review labels outside the queue's label set, reviewed rows without a reviewer, unreadable
    ``reviewed_at``. Rows without a review label are skipped (still to review). Importing the same
    reviews again writes nothing.

    Args:
        store: the object store.
        key: the queue key the file was exported from.
        in_path: the reviewed ``.csv`` or ``.jsonl`` file.
        now: the ``reviewed_at`` given to rows that leave it empty (default: the current time).

    Returns:
        What was imported.

    Raises:
        ReviewImportError: the file has problems; its message lists them with their lines.
    """
    path = Path(in_path)
    return import_review_rows(store, key, _read_rows(path), source=str(path), now=now)


def import_review_rows(
    store: ObjectStore, key: str, rows: Iterable[tuple[int, Mapping[str, object]]], *, source: str,
    now: dt.datetime | None = None,
) -> ReviewImport:
    """:func:`import_reviews` of rows already read: ``(line, row)`` pairs from a file, or labels given in a
    page (``pipelines.console``); the same checks and the same create-only ``reviews-<n>.jsonl``.

    Raises:
        ReviewImportError: a row has problems (``source`` names where the rows came from).
    """
    items, meta = read_queue(store, key)
    predicted = {str(i["id"]): i["predicted_label"] for i in items}
    labels = list(meta["labels"])
    stamp = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    default_at = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
    errors: list[str] = []
    seen: dict[str, int] = {}
    reviews: list[dict[str, object]] = []
    unreviewed = 0
    for number, row in rows:
        where = f"line {number}"
        rid = _text(row.get("id"))
        if not rid:
            errors.append(f"{where}: no id")
            continue
        if rid not in predicted:
            errors.append(f"{where}: unknown id {rid!r} (not in {key}; was the file exported from another queue?)")
            continue
        if rid in seen:
            errors.append(f"{where}: id {rid!r} repeats line {seen[rid]}; keep one row per id")
            continue
        seen[rid] = number
        label = _text(row.get("review_label"))
        if not label:
            unreviewed += 1
            continue
        if label not in labels:
            errors.append(f"{where}: id {rid!r}: review_label {label!r} is not in the label set {labels}")
        reviewer = _text(row.get("reviewer"))
        if not reviewer:
            errors.append(f"{where}: id {rid!r}: review_label given but reviewer is empty; add who reviewed it")
        given_at = _text(row.get("reviewed_at"))
        reviewed_at = _timestamp(given_at) if given_at else default_at
        if reviewed_at is None:
            errors.append(f"{where}: id {rid!r}: reviewed_at {given_at!r} is not ISO-8601 "
                          "(e.g. 2026-10-12T09:30:00Z); or leave it empty for the import time")
        reviews.append({"id": rid, "predicted_label": predicted[rid], "review_label": label,
                        "reviewer": reviewer, "reviewed_at": reviewed_at, "queue": key})
    if errors:
        raise ReviewImportError(source, errors)
    agreed = sum(r["review_label"] == r["predicted_label"] for r in reviews)
    result = dict(queue=key, reviewed=len(reviews), unreviewed=unreviewed, agreed=agreed)
    if not reviews:
        return ReviewImport(reviews_key=None, written=False, **result)
    folder = key.rsplit("/", 1)[0]
    existing = _reviews_files(store, folder)
    signature = _review_signature(reviews)
    for _n, other in existing:
        rows = [json.loads(line) for line in store.get(other).decode().splitlines() if line.strip()]
        if rows and rows[0].get("queue") == key and _review_signature(rows) == signature:
            return ReviewImport(reviews_key=other, written=False, **result)
    data = jsonl_bytes(reviews, REVIEW_FIELDS)
    n = existing[-1][0] + 1 if existing else 1
    while not store.put(f"{folder}/reviews-{n}.jsonl", data, if_none_match=True):
        n += 1  # another import took this number first
    return ReviewImport(reviews_key=f"{folder}/reviews-{n}.jsonl", written=True, **result)


def load_reviews(store: ObjectStore, *, domain: str, interval: str, prefix: str = "review") -> dict[str, dict]:
    """Every review of a partition by id; where reviews files disagree, the later file wins."""
    merged: dict[str, dict] = {}
    for _n, key in _reviews_files(store, partition_review_prefix(domain, interval, prefix=prefix)):
        for line in store.get(key).decode().splitlines():
            if line.strip():
                review = json.loads(line)
                merged[str(review["id"])] = review
    return merged



# ---------------------------------------------------------------------------------------------
# Applying reviews


def apply_reviews(
    rows: Sequence[Mapping[str, object]],
    reviews: Mapping[str, Mapping[str, object]] | Iterable[Mapping[str, object]],
    *,
    label_field: str = "label",
) -> tuple[list[dict[str, object]], ReviewStats]:
    """Put reviewed labels over predicted ones (pure; the input rows are not changed).

    Args:
        rows: the partition's rows; ``label_field`` holds the predicted label.
        reviews: reviews by id (from :func:`load_reviews`) or a sequence of review rows (later wins).
        label_field: the field that holds the label.

    Returns:
        New rows with reviewed labels in ``label_field``, and the stats: share of rows reviewed and
        how often the prediction agreed with the reviewer.
    """
    values = reviews.values() if isinstance(reviews, Mapping) else reviews
    by_id = {str(r["id"]): str(r["review_label"]) for r in values}
    out, reviewed, agreed, matched = [], 0, 0, set()
    for row in rows:
        rid = str(row["id"])
        label = by_id.get(rid)
        if label is None:
            out.append(dict(row))
            continue
        matched.add(rid)
        reviewed += 1
        agreed += row.get(label_field) == label
        out.append({**row, label_field: label})
    stats = ReviewStats(rows=len(rows), reviewed=reviewed, share_reviewed=reviewed / len(rows) if rows else 0.0,
                        agreed=agreed, agreement=agreed / reviewed if reviewed else None,
                        unmatched_reviews=len(set(by_id) - matched))
    return out, stats
