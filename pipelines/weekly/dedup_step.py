"""``find_duplicates``: exact dedup of one partition, decided once over the partition, applied per part.

1. **Hashes.** ``govern_shard`` stages beside each of its outputs the content hash (32 bytes), arrival day
   (8 bytes) and id of every row (``stage_hashes``: computed per shard, in parallel).
2. **Decision** (``decide_duplicates``, once per partition): the one ``pipelines.dedup.dedup_partition``
   makes (same functions, on the hashes instead of the texts) over every part in order, against the
   persistent index; then the id conflicts (a different text under an id already kept: ``id_conflict``)
   over the kept rows in order. Its partition-wide state is ~40 bytes a record plus the kept ids, never
   texts. It stages each part's decision (the rows it drops, and why), the partition's signatures and
   the report, whose counts are final.
3. **Application** (``apply_duplicates``, per part: the DAG's ``finish_shard``): the part's rows stream
   through; the kept ones are written with their ``content_sha256``, the others to the part's
   ``duplicates.jsonl`` / ``rejected.dedup.jsonl``.

A week of one shard is one part under the partition's own names; a sharded week's parts stay in the
shards' staging (``pipelines.weekly.parts``), read one after the other and never rewritten as one object.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup import as_hash_array, decide, distinct_in_order, first_occurrences
from pipelines.dedup.index import encode_segment
from pipelines.dedup.normalize import packed_hashes
from pipelines.ingest.parse import Rejection
from pipelines.partition import day_number, from_day_number
from pipelines.serialize import ParquetParts, get_json, put_json
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.batches import (
    JsonlFile, Progress, download, iter_staged_rows, log, upload, work_folder,
)
from pipelines.weekly.layout import PartitionRef, hash_index
from pipelines.weekly.parts import name_parts, sibling, staged_parts
from pipelines.weekly.results import StepResult

# Beside a staged data object ``<key>``: the hashes, days and ids of its rows.
HASHES_SUFFIX = ".sha256"
DECISION = "dedup-decision.json"  # beside a part: what apply_duplicates drops from it
NAME, OUTPUT = "dedup", "deduplicated"


class RowHasher:
    """The content hash (32 bytes), arrival day number and id of rows added batch by batch, in order."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.days: list[np.ndarray] = []
        self.ids: list[str] = []
        self._day_of: dict[str, int] = {}

    def add(self, batch: Sequence[dict]) -> None:
        if not batch:
            return
        day_of = self._day_of
        self.hashes.append(packed_hashes([r["text"] for r in batch]))
        for r in batch:
            if r["arrival_date"] not in day_of:
                day_of[r["arrival_date"]] = day_number(dt.date.fromisoformat(r["arrival_date"]))
        self.days.append(np.fromiter((day_of[r["arrival_date"]] for r in batch), np.int64, len(batch)))
        self.ids.extend(r["id"] for r in batch)

    def result(self) -> tuple[bytes, np.ndarray, list[str]]:
        return b"".join(self.hashes), (np.concatenate(self.days) if self.days else np.empty(0, np.int64)), self.ids


def hash_rows(path, *, batch_rows: int, progress: Progress | None = None) -> tuple[bytes, np.ndarray, list[str]]:
    """The content hash (32 bytes each, concatenated), arrival day number and id of every row of a local
    staged Parquet file, in order; reads only the ``text``, ``arrival_date`` and ``id`` columns."""
    hasher = RowHasher()
    for batch in iter_staged_rows(path, batch_rows=batch_rows, columns=["id", "text", "arrival_date"]):
        hasher.add(batch)
        if progress is not None:
            progress.add(len(batch))
    return hasher.result()


def _describe(store: ObjectStore, key: str) -> dict | None:
    """Size and etag of the object at ``key`` (``None``: there is none): what staged hashes were made of."""
    for info in store.list(key):
        if info.key == key:
            return {"size": info.size, "etag": info.etag}
    return None


def put_hashes(store: ObjectStore, key: str, packed: bytes, days: np.ndarray, ids: list[str]) -> None:
    """Stage the hashes, days and ids of the rows of the object now at ``key`` beside it (``stage_hashes``)."""
    header = {"rows": len(days), "of": _describe(store, key)}
    store.put(key + HASHES_SUFFIX, json.dumps(header, sort_keys=True).encode() + b"\n" + packed
              + days.astype("<i8").tobytes() + json.dumps(ids, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def stage_hashes(store: ObjectStore, key: str, path, *, batch_rows: int) -> int:
    """Stage the hashes, days and ids of the rows of ``path`` (the local copy of ``key``) beside ``key``
    (``<key>.sha256``: one JSON line naming the rows and the object they were made of, by size and etag;
    the hashes; the days as int64; the ids as a JSON list); returns the rows."""
    packed, days, ids = hash_rows(path, batch_rows=batch_rows)
    put_hashes(store, key, packed, days, ids)
    return len(days)


def staged_hashes(store: ObjectStore, key: str) -> tuple[bytes, np.ndarray, list[str]] | None:
    """The hashes, days and ids staged beside ``key``, if they were made of the object now at ``key``."""
    try:
        body = store.get(key + HASHES_SUFFIX)
    except NotFound:
        return None
    end = body.index(b"\n")
    header = json.loads(body[:end])
    n, start = header["rows"], end + 1
    if header["of"] != _describe(store, key):
        log.warning("find_duplicates: %s%s was not made of the object now at %s: hashing its rows", key,
                    HASHES_SUFFIX, key)
        return None
    days = np.frombuffer(body[start + 32 * n:start + 40 * n], dtype="<i8").astype(np.int64)
    return body[start:start + 32 * n], days, json.loads(body[start + 40 * n:].decode("utf-8", "surrogatepass"))


def decide_duplicates(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
    """Decide which rows of the partition at ``key`` (its parts, in order) are kept, duplicates or id
    conflicts; stage each part's decision, the partition's signatures and the dedup report (its counts
    are final), and name the parts of what ``apply_duplicates`` writes. Reads no text (but a part's
    whose hashes are missing or stale). Returns the report; its ``key`` is the partition's deduplicated rows.
    """
    started = time.perf_counter()
    index = hash_index(config, store, part.domain)
    progress = Progress("dedup", part.label)
    parts = staged_parts(store, key)
    hashes, days, ids, sizes = [], [], [], []
    with work_folder("dedup") as folder:
        for part_key in parts:
            staged = staged_hashes(store, part_key)
            if staged is None:
                source = download(store, part_key, folder)
                staged = hash_rows(source, batch_rows=config.ingest.batch_rows, progress=progress)
                source.unlink()
                put_hashes(store, part_key, *staged)  # apply_duplicates takes the hashes from there
            else:
                progress.add(len(staged[1]))
            hashes.append(staged[0])
            days.append(staged[1])
            ids.extend(staged[2])
            sizes.append(len(staged[1]))
    packed = b"".join(hashes)
    del hashes
    all_hashes = as_hash_array(packed)
    first_index = first_occurrences(all_hashes)
    distinct = distinct_in_order(all_hashes, first_index)
    earliest = index.lookup(distinct) if len(distinct) else np.empty(0, np.int32)
    decision = decide(hashes=all_hashes, days=np.concatenate(days) if days else np.empty(0, np.int64),
                      start_day=day_number(part.interval.start), end_day=day_number(part.interval.end),
                      earliest=earliest, first_index=first_index)
    del days, first_index, distinct, earliest, packed, all_hashes
    keep = np.zeros(len(ids), dtype=bool)
    keep[np.asarray(decision.kept, dtype=np.int64)] = True
    # Ids must be unique in a partition; a different text under an id already kept is a conflict.
    seen: set[str] = set()
    conflicts = []
    for i in np.flatnonzero(keep).tolist():
        if ids[i] in seen:
            conflicts.append(i)
        else:
            seen.add(ids[i])
    del seen, ids
    bounds = np.cumsum([0, *sizes]).tolist()
    dropped = sorted(decision.duplicates)
    for k, part_key in enumerate(parts):
        lo, hi = bounds[k], bounds[k + 1]
        put_json(store, sibling(part_key, DECISION), {
            "rows": hi - lo,
            "duplicates": [[i - lo, reason, from_day_number(day).isoformat()] for i, reason, day in dropped
                           if lo <= i < hi],
            "id_conflicts": [i - lo for i in conflicts if lo <= i < hi]})
    store.put(part.staging(config, "signatures.seg"), encode_segment(decision.entries))
    written = part.staging(config, f"{OUTPUT}.parquet")
    name_parts(store, written, [sibling(p, f"{OUTPUT}.parquet") for p in parts])
    for name in (f"rejected.{NAME}.jsonl", "duplicates.jsonl"):
        name_parts(store, part.staging(config, name), [sibling(p, name) for p in parts])
    duplicate = len(dropped)
    result = StepResult(
        step=NAME, key=written, rows_in=len(keep), kept=int(keep.sum()) - len(conflicts), rejected=len(conflicts),
        extra={"duplicate": duplicate,
               "displaced": [from_day_number(d).isoformat() for d in decision.displaced_days],
               "index": {"buckets_touched": index.stats.buckets_touched,
                         "segments_read": index.stats.segments_read}},
        seconds=round(time.perf_counter() - started, 3))
    put_json(store, part.staging(config, f"{NAME}.json"), result.to_dict())
    progress.done()
    log.info("dedup %s: in=%d kept=%d duplicate=%d id conflicts=%d, over %d part(s)", part.label, len(keep),
             result.kept, duplicate, len(conflicts), len(parts))
    return result


def apply_duplicates(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> str:
    """Apply the partition's decision to one part (``key``: its rows; ``part``: the shard, for the logs):
    write the kept rows with their ``content_sha256``, the duplicates and the id conflicts beside it, then
    delete the part's input. A part already applied in this run is left as it is. Returns the rows' key."""
    written = sibling(key, f"{OUTPUT}.parquet")
    decision_key = sibling(key, DECISION)
    if not store.exists(key) and store.exists(written) and not store.exists(decision_key):
        log.info("dedup %s: already applied in this run", part.label)
        return written
    batch_rows = config.ingest.batch_rows
    decision = get_json(store, decision_key)
    staged = staged_hashes(store, key)
    if staged is None or len(staged[1]) != decision["rows"]:
        raise RuntimeError(f"{part.label}: the rows at {key} are not those find_duplicates decided on; "
                           "run the partition again from ingest_landing")
    packed = staged[0]
    dropped = {i: (reason, first_seen) for i, reason, first_seen in decision["duplicates"]}
    conflicts = set(decision["id_conflicts"])
    progress = Progress("dedup_apply", part.label)
    n = 0
    with work_folder("dedup-apply") as folder:
        source = download(store, key, folder)
        with ParquetParts(folder / "out", batch_rows=batch_rows) as out, \
                JsonlFile(folder / "rejected.jsonl") as rejected, JsonlFile(folder / "duplicates.jsonl") as dups:
            for batch in iter_staged_rows(source, batch_rows=batch_rows):
                rows = []
                for row in batch:
                    i, n = n, n + 1
                    row["content_sha256"] = packed[32 * i:32 * i + 32].hex()
                    if i in dropped:
                        reason, first_seen = dropped[i]
                        dups.write(({"id": row["id"], "source_uri": row["source_uri"],
                                     "content_sha256": row["content_sha256"], "reason": reason,
                                     "first_seen": first_seen},))
                    elif i in conflicts:
                        rejected.write((Rejection(row["source_uri"], "dedup", "id_conflict",
                                                  f"id {row['id']!r} already used by another record in this "
                                                  "partition", row["text"][:4096]).to_dict(),))
                    else:
                        rows.append(row)
                out.write(rows)
                progress.add(len(batch))
            source.unlink()
            (path,) = out.close()
        if n != decision["rows"]:
            raise RuntimeError(f"{part.label}: read {n} rows at {key}, find_duplicates decided on {decision['rows']}")
        rejected.close()
        dups.close()
        upload(store, written, path)
        upload(store, sibling(key, f"rejected.{NAME}.jsonl"), rejected.path)
        upload(store, sibling(key, "duplicates.jsonl"), dups.path)
    for done in (key + HASHES_SUFFIX, key, decision_key):  # the decision last: it marks the part not applied
        store.delete(done)
    progress.done()
    return written


class DedupStep:
    """SHA-256 exact dedup of the partition against itself and the persistent index: the decision, then
    its application to every part in this process (the DAG runs the applications as shard tasks).

    Nothing is written to the index here: the partition's signature set is staged and added by
    ``publish_partition``, so a partition that fails validation never hides later records.
    """

    name = NAME
    output = OUTPUT
    __name__ = "find_duplicates"

    def __call__(self, *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
        parts = staged_parts(store, key)
        result = decide_duplicates(config=config, store=store, part=part, key=key)
        for k, part_key in enumerate(parts):
            apply_duplicates(config=config, store=store, part=part.shard_ref(None if len(parts) == 1 else k),
                             key=part_key)
        return result
