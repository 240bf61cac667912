"""The human review queue: one file per partition version in the object store, exported for reviewers.

Layout (``<prefix>`` is ``review`` by default)::

    <prefix>/<domain>/<interval>/queue-<version>.jsonl       the records to review (one JSON object a line)
    <prefix>/<domain>/<interval>/queue-<version>.meta.json   label set, labeller, counts; written last (commit marker)

``<version>`` names what was labelled (the curated partition version, e.g. ``v3``); a new
version gets a new queue. A queue line holds, in this order::

    {"id": "LG-000123", "domain": "legal", "text": "...", "predicted_label": "contract",
     "confidence": 0.5312, "reason": "low_confidence", "review_label": null, "reviewer": null,
     "reviewed_at": null}

``reason`` is ``low_confidence`` (confidence below the threshold) or ``sampled`` (the seeded
random share, see :mod:`pipelines.review.sampling`). Reviewers answer in the exported file;
importing and applying their answers is :mod:`pipelines.review.reviews`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pipelines.review.sampling import ReviewConfig, review_reasons
from pipelines.storage import NotFound, ObjectStore

QUEUE_FIELDS = ("id", "domain", "text", "predicted_label", "confidence", "reason",
                "review_label", "reviewer", "reviewed_at")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUEUE_KEY = re.compile(r"^(?P<prefix>.+)/(?P<domain>[^/]+)/(?P<interval>[^/]+)/queue-(?P<version>[^/]+)\.jsonl$")


class Predictor(Protocol):
    """What :func:`queue_partition` needs from a labeller (``pipelines.label.Labeller`` is one)."""

    labels: tuple[str, ...]
    version: str

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]: ...


# ---------------------------------------------------------------------------------------------
# Keys


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{what}={value!r}: use letters, digits, '.', '_' or '-' (no '/')")


def partition_review_prefix(domain: str, interval: str, *, prefix: str = "review") -> str:
    """``<prefix>/<domain>/<interval>``: the folder of one partition's queues and reviews."""
    _check_name("domain", domain)
    _check_name("interval", interval)
    return f"{prefix.rstrip('/')}/{domain}/{interval}"


def queue_key(domain: str, interval: str, version: str, *, prefix: str = "review") -> str:
    """The key of one partition version's queue."""
    _check_name("version", version)
    return f"{partition_review_prefix(domain, interval, prefix=prefix)}/queue-{version}.jsonl"


def meta_key(key: str) -> str:
    """The commit marker of a queue: its label set, labeller and counts."""
    return key.removesuffix(".jsonl") + ".meta.json"


def parse_queue_key(key: str) -> dict[str, str]:
    """Split a queue key into ``prefix``, ``domain``, ``interval``, ``version``."""
    match = _QUEUE_KEY.match(key)
    if not match:
        raise ValueError(f"{key!r} is not a queue key: expected <prefix>/<domain>/<interval>/queue-<version>.jsonl")
    return match.groupdict()


# ---------------------------------------------------------------------------------------------
# Building and writing a queue


def build_queue(
    records: Sequence[Mapping[str, object]],
    predictions: Sequence[tuple[str, float]],
    *,
    domain: str,
    partition_key: str,
    config: ReviewConfig = ReviewConfig(),
) -> list[dict[str, object]]:
    """The queue lines for one partition (pure: no I/O).

    Args:
        records: the partition's records (``id`` and ``text`` are used).
        predictions: ``(label, confidence)`` per record, same order.
        domain: written on every line.
        partition_key: seeds the random share (see :func:`pipelines.review.sampling.select_for_review`).
        config: the review share and the low-confidence threshold.

    Returns:
        The selected records as queue lines, in record order, with empty review fields.
    """
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    ids = [r["id"] for r in records]
    reasons = review_reasons(ids, [c for _, c in predictions], partition_key=partition_key,
                             share=config.share, low_confidence=config.low_confidence)
    queue = []
    for record, (label, confidence) in zip(records, predictions):
        reason = reasons.get(record["id"])
        if reason is not None:
            queue.append({"id": record["id"], "domain": domain, "text": record["text"], "predicted_label": label,
                          "confidence": round(float(confidence), 4), "reason": reason,
                          "review_label": None, "reviewer": None, "reviewed_at": None})
    return queue


def jsonl_bytes(rows: Iterable[Mapping[str, object]], fields: Sequence[str]) -> bytes:
    """One JSON object a line with exactly ``fields``, in that order (queue and reviews files alike)."""
    return "".join(json.dumps({f: row.get(f) for f in fields}, ensure_ascii=False) + "\n" for row in rows).encode()


def write_queue(
    store: ObjectStore,
    *,
    domain: str,
    interval: str,
    version: str,
    items: Sequence[Mapping[str, object]],
    labels: Sequence[str],
    labeller: Mapping[str, object] | None = None,
    config: ReviewConfig = ReviewConfig(),
    prefix: str = "review",
) -> dict[str, object]:
    """Write a queue, then its meta file last as the commit marker; skip if already committed.

    Args:
        store: the object store.
        domain: the partition's domain.
        interval: the partition's interval name (``2026-10-04_2026-10-11``).
        version: what was labelled (the curated version); a committed queue is never rewritten.
        items: the queue lines from :func:`build_queue`.
        labels: the label set reviewers must choose from.
        labeller: recorded in the meta file (e.g. the labeller's version and digest).
        config: recorded in the meta file.
        prefix: the review prefix in the store.

    Returns:
        The meta record plus ``written`` (False if the queue was already committed).
    """
    key = queue_key(domain, interval, version, prefix=prefix)
    marker = meta_key(key)
    if store.exists(marker):
        return {**json.loads(store.get(marker)), "written": False}
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels={list(labels)!r}: pass the labeller's label set (non-empty, no repeats)")
    unknown = sorted({str(i["predicted_label"]) for i in items} - set(labels))
    if unknown:
        raise ValueError(f"predicted label(s) {unknown} are not in the label set {list(labels)}")
    data = jsonl_bytes(items, QUEUE_FIELDS)
    # No marker yet: any queue bytes there are from a run that did not commit, so overwriting is safe.
    store.put(key, data)
    meta = {
        "queue": key, "domain": domain, "interval": interval, "version": version, "labels": list(labels),
        "labeller": dict(labeller or {}), "share": config.share, "low_confidence": config.low_confidence,
        "counts": {"queued": len(items), "low_confidence": sum(i["reason"] == "low_confidence" for i in items),
                   "sampled": sum(i["reason"] == "sampled" for i in items)},
        "sha256": hashlib.sha256(data).hexdigest(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if not store.put(marker, json.dumps(meta, indent=2, ensure_ascii=False).encode(), if_none_match=True):
        return {**json.loads(store.get(marker)), "written": False}  # a concurrent run committed first
    return {**meta, "written": True}


def queue_partition(
    store: ObjectStore,
    *,
    domain: str,
    interval: str,
    version: str,
    records: Sequence[Mapping[str, object]],
    labeller: Predictor,
    config: ReviewConfig = ReviewConfig(),
    prefix: str = "review",
) -> dict[str, object]:
    """Label a partition's records and queue the uncertain and sampled ones for review.

    Returns:
        The queue's meta record plus ``written`` (see :func:`write_queue`); the predictions are
        not returned: large data moves through the store.
    """
    key = queue_key(domain, interval, version, prefix=prefix)
    if store.exists(meta_key(key)):
        return {**json.loads(store.get(meta_key(key))), "written": False}
    predictions = labeller.predict([str(r["text"]) for r in records])
    items = build_queue(records, predictions, domain=domain, partition_key=f"{domain}/{interval}", config=config)
    return write_queue(store, domain=domain, interval=interval, version=version, items=items,
                       labels=labeller.labels, labeller={"version": labeller.version}, config=config, prefix=prefix)


def read_queue(store: ObjectStore, key: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    """A committed queue's lines and meta record."""
    parse_queue_key(key)
    try:
        meta = json.loads(store.get(meta_key(key)))
    except NotFound:
        raise NotFound(f"{key}: no committed queue (its marker {meta_key(key)} is missing); "
                       "list the partition's queues with store.list('<prefix>/<domain>/<interval>/')") from None
    data = store.get(key)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{key}: bytes do not match the digest in {meta_key(key)}; the queue was edited in place")
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()], meta


# ---------------------------------------------------------------------------------------------
# Export for reviewers


def export_queue(store: ObjectStore, key: str, out_path: str | Path) -> int:
    """Write a queue for reviewers: ``.csv`` (UTF-8 with BOM, opens in spreadsheets) or ``.jsonl``.

    Returns:
        The number of rows written.
    """
    items, _meta = read_queue(store, key)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(QUEUE_FIELDS)
        for item in items:
            writer.writerow(["" if item.get(f) is None else item[f] for f in QUEUE_FIELDS])
        out.write_text(buffer.getvalue(), encoding="utf-8-sig", newline="")
    elif suffix in (".jsonl", ".ndjson"):
        out.write_bytes(jsonl_bytes(items, QUEUE_FIELDS))
    else:
        raise ValueError(f"{out}: use a .csv or .jsonl file name")
    return len(items)
