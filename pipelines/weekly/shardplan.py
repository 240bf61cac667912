"""Where a large week is cut into shards: by landing file, then by row range (``ingest.shard_records``).

``ingest_landing`` writes the week's records to one local JSON Lines file in (arrival date, key, line)
order and knows how many records each landing file gave. ``plan_cuts`` turns those counts into the
shards' record ranges: whole files are packed into a shard while they fit, a file larger than a shard
is cut into row ranges. ``split_lines`` writes the ranges as one file per shard. A shard is a
contiguous range of the week's records, so the shards' outputs put back in shard order are the
week's records in their order (``pipelines.weekly.shards.gather_shards``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipelines.pii import PiiMapping
from pipelines.storage import ObjectStore, get_file

# A shard's distinct personal-data values in order of first appearance, and their partition-wide token
# numbers (staged in the shard's staging: raw values, deleted with the run's staging).
PII_VALUES = "pii_values.jsonl"
PII_TOKENS = "pii_tokens.jsonl"


def plan_cuts(file_records: Sequence[int], *, shard_records: int) -> list[tuple[int, int]]:
    """The record ranges ``[start, end)`` of a week's shards.

    Args:
        file_records: records of each landing file, in the order they were written.
        shard_records: the most records of a shard; 0 never shards.

    Returns:
        One range covering every record when the week holds at most ``shard_records`` records (or
        ``shard_records`` is 0); else consecutive ranges of at most ``shard_records`` records that end
        at a file boundary, except inside a file larger than a shard.
    """
    total = sum(file_records)
    if shard_records <= 0 or total <= shard_records:
        return [(0, total)]
    ranges: list[tuple[int, int]] = []
    start = end = 0
    for n in file_records:
        if end > start and end - start + n > shard_records:  # the next file does not fit: cut between files
            ranges.append((start, end))
            start = end
        end += n
        while end - start > shard_records:  # a file larger than a shard: cut it by row range
            ranges.append((start, start + shard_records))
            start += shard_records
    if end > start:
        ranges.append((start, end))
    return ranges


def split_lines(path: Path, ranges: Sequence[tuple[int, int]], folder: Path) -> list[Path]:
    """Write the lines of ``path`` in each range of ``ranges`` (consecutive, from line 0) to its own
    file in ``folder`` (``shard-00000.jsonl``, ...), streamed."""
    paths = [folder / f"shard-{k:05d}.jsonl" for k in range(len(ranges))]
    with open(path, "rb") as source:
        for (start, end), out_path in zip(ranges, paths):
            with open(out_path, "wb") as out:
                for _ in range(end - start):
                    line = source.readline()
                    if not line:
                        raise RuntimeError(f"{path}: fewer lines than the shard plan's {ranges[-1][1]} records")
                    out.write(line)
    return paths


def load_numbering(store: ObjectStore, key: str, folder: Path) -> PiiMapping:
    """The partition-wide PII numbering a shard masks with (``PII_TOKENS`` at ``key``, read via ``folder``)."""
    path = folder / PII_TOKENS
    get_file(store, key, path)
    with open(path, "rb") as fh:
        mapping = PiiMapping.numbered((item["kind"], item["value"], item["n"]) for item in map(json.loads, fh))
    path.unlink()
    return mapping
