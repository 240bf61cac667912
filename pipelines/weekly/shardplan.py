"""Where a large week is cut into shards: by landing file, then by row range (``ingest.shard_records``).

``ingest_landing`` writes the week's records in (arrival date, key, line) order, one landing file at a
time, through ``ShardFiles``, which cuts the shards as the records come (each file's record count is
known before its records are written): whole files are packed into a shard while they fit, a file
larger than a shard is cut into row ranges of ``ingest.shard_records``. Every shard is uploaded as soon
as it is full, so the week is written once and never held on local disk whole. A shard is a contiguous range of
the week's records, so the shards' outputs read in shard order are the week's records in their order
(``pipelines.weekly.shards.gather_shards``).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.pii import PiiMapping
from pipelines.storage import ObjectStore, get_file

# A shard's distinct personal-data values in order of first appearance, and their partition-wide token
# numbers (staged in the shard's staging: raw values, deleted with the run's staging).
PII_VALUES = "pii_values.jsonl"
PII_TOKENS = "pii_tokens.jsonl"


class ShardFiles:
    """The week's records as JSON Lines shard files of at most ``shard_records`` records (0: one file).

    A shard is cut before a landing file that does not fit in what is left of it (a week that fits is
    one shard), and inside a file larger than a shard, every ``shard_records`` records.

    ``begin_file(n)`` before the ``n`` records of each landing file, ``write(line)`` for each record. A
    full shard is handed to ``done(k, path)`` (upload it, then it may be deleted) as soon as the next
    record goes to a new shard; ``close()`` hands over the last one and returns how many there are.
    ``done`` is called with ``k=None`` for a week that was never cut (one shard: the whole partition).
    """

    def __init__(self, folder: Path, *, shard_records: int, done) -> None:  # noqa: ANN001 - (int | None, Path)
        self.folder, self.shard_records, self.done = folder, shard_records, done
        self.shards = 0  # shards handed over
        self.count = 0  # records in the open shard
        self._fh = open(self._path(0), "wb")

    def _path(self, k: int) -> Path:
        return self.folder / f"shard-{k:05d}.jsonl"

    def _cut(self) -> None:
        self._fh.close()
        self.done(self.shards, self._path(self.shards))
        self.shards += 1
        self.count = 0
        self._fh = open(self._path(self.shards), "wb")

    def begin_file(self, records: int) -> None:
        if self.shard_records > 0 and self.count and self.count + records > self.shard_records:
            self._cut()  # the file does not fit: it starts the next shard

    def write(self, line: bytes) -> None:
        if self.shard_records > 0 and self.count == self.shard_records:
            self._cut()  # a file larger than a shard: cut by row range
        self._fh.write(line)
        self.count += 1

    def close(self) -> int:
        if self._fh.closed:
            return self.shards
        self._fh.close()
        self.done(self.shards if self.shards else None, self._path(self.shards))
        self.shards += 1
        return self.shards

    def __enter__(self) -> ShardFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._fh.closed:
            self._fh.close()


def load_numbering(store: ObjectStore, key: str, folder: Path) -> PiiMapping:
    """The partition-wide PII numbering a shard masks with (``PII_TOKENS`` at ``key``, read via ``folder``)."""
    path = folder / PII_TOKENS
    get_file(store, key, path)
    with open(path, "rb") as fh:
        mapping = PiiMapping.numbered((item["kind"], item["value"], item["n"]) for item in map(json.loads, fh))
    path.unlink()
    return mapping
