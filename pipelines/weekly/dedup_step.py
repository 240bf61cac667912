"""``find_duplicates``: exact dedup of one partition in two streaming passes.

Pass 1 reads only the ``text`` and ``arrival_date`` columns, a batch at a time, and keeps 32 bytes of
content hash plus 8 bytes of arrival day per record (the decision's partition-wide state: ~40 MB per
million records). The decision is the one ``pipelines.dedup.dedup_partition`` makes (same functions,
on the hashes instead of the texts). Pass 2 streams the rows again and writes the kept ones with their
``content_sha256``; ids already used in the partition are rejected (``id_conflict``), which needs the
set of kept ids.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup import as_hash_array, decide, distinct_in_order, first_occurrences
from pipelines.dedup.index import encode_segment
from pipelines.dedup.normalize import packed_hashes
from pipelines.ingest.parse import Rejection
from pipelines.partition import day_number, from_day_number
from pipelines.serialize import ParquetParts, put_json
from pipelines.storage import ObjectStore
from pipelines.weekly.batches import (
    JsonlFile, Progress, download, iter_staged_rows, log, release_input, upload, work_folder,
)
from pipelines.weekly.layout import PartitionRef, hash_index
from pipelines.weekly.results import StepResult


class DedupStep:
    """SHA-256 exact dedup of the partition against itself and the persistent index.

    Nothing is written to the index here: the partition's signature set is staged and added by
    ``publish_partition``, so a partition that fails validation never hides later records.
    """

    name = "dedup"
    output = "deduplicated"
    __name__ = "find_duplicates"

    def __call__(self, *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
        started = time.perf_counter()
        batch_rows = config.ingest.batch_rows
        index = hash_index(config, store, part.domain)
        progress = Progress(self.name, f"{part.domain} {part.interval.name}")
        with work_folder(self.name) as folder:
            source = download(store, key, folder)
            hashes, days = [], []
            day_of: dict[str, int] = {}
            for batch in iter_staged_rows(source, batch_rows=batch_rows, columns=["text", "arrival_date"]):
                hashes.append(packed_hashes([r["text"] for r in batch]))
                for r in batch:
                    if r["arrival_date"] not in day_of:
                        day_of[r["arrival_date"]] = day_number(dt.date.fromisoformat(r["arrival_date"]))
                days.append(np.fromiter((day_of[r["arrival_date"]] for r in batch), np.int64, len(batch)))
                progress.add(len(batch))
            packed = b"".join(hashes)
            del hashes
            all_hashes = as_hash_array(packed)
            first_index = first_occurrences(all_hashes)
            distinct = distinct_in_order(all_hashes, first_index)
            earliest = index.lookup(distinct) if len(distinct) else np.empty(0, np.int32)
            decision = decide(hashes=all_hashes, days=np.concatenate(days) if days else np.empty(0, np.int64),
                              start_day=day_number(part.interval.start), end_day=day_number(part.interval.end),
                              earliest=earliest, first_index=first_index)
            del days, first_index, distinct, earliest
            keep = np.zeros(len(all_hashes), dtype=bool)
            keep[np.asarray(decision.kept, dtype=np.int64)] = True
            dropped = {i: (reason, first_day) for i, reason, first_day in decision.duplicates}
            # Ids must be unique in a partition; a different text under an id already kept is a conflict.
            seen_ids: set[str] = set()
            kept = n = 0
            with ParquetParts(folder / "out", batch_rows=batch_rows) as out, \
                    JsonlFile(folder / "rejected.jsonl") as conflicts, JsonlFile(folder / "duplicates.jsonl") as dups:
                for batch in iter_staged_rows(source, batch_rows=batch_rows):
                    rows = []
                    for row in batch:
                        i, n = n, n + 1
                        row["content_sha256"] = packed[32 * i:32 * i + 32].hex()
                        if i in dropped:
                            reason, first_day = dropped[i]
                            dups.write(({"id": row["id"], "source_uri": row["source_uri"],
                                         "content_sha256": row["content_sha256"], "reason": reason,
                                         "first_seen": from_day_number(first_day).isoformat()},))
                        elif keep[i]:
                            if row["id"] in seen_ids:
                                conflicts.write((Rejection(row["source_uri"], "dedup", "id_conflict",
                                                           f"id {row['id']!r} already used by another record in "
                                                           "this partition", row["text"][:4096]).to_dict(),))
                                continue
                            seen_ids.add(row["id"])
                            rows.append(row)
                    out.write(rows)
                    kept += len(rows)
                source.unlink()
                (path,) = out.close()
            conflicts.close()
            dups.close()
            written = upload(store, part.staging(config, f"{self.output}.parquet"), path)
            upload(store, part.staging(config, f"rejected.{self.name}.jsonl"), conflicts.path)
            upload(store, part.staging(config, "duplicates.jsonl"), dups.path)
        store.put(part.staging(config, "signatures.seg"), encode_segment(decision.entries))
        result = StepResult(
            step=self.name, key=written, rows_in=n, kept=kept, rejected=conflicts.lines,
            extra={"duplicate": dups.lines,
                   "displaced": [from_day_number(d).isoformat() for d in decision.displaced_days],
                   "index": {"buckets_touched": index.stats.buckets_touched,
                             "segments_read": index.stats.segments_read}},
            seconds=round(time.perf_counter() - started, 3))
        put_json(store, part.staging(config, f"{self.name}.json"), result.to_dict())
        release_input(store, key=key, staging=part.staging(config, ""))
        progress.done()
        log.info("%s %s %s: in=%d kept=%d duplicate=%d rejected=%d", self.name, part.domain, part.interval.name, n,
                 kept, dups.lines, conflicts.lines)
        return result
