"""Deciding a partition in shards by content-hash bucket (issue 15, part 2).

Every copy of a hash falls in the same bucket (``index.bucket_numbers``), and the decision for a record
depends only on the records with its hash (earlier in the partition) and on the index's entry for that
hash. So the records of a bucket range, kept in arrival order, can be decided by one task without
seeing any other bucket, and the union of the shards' decisions is the unsharded decision exactly:
``decide_shard`` for each range, ``merge_decisions`` to put them together (in any order). A shard looks
up and adds only its own buckets, so its index cost is its share of the week.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.dedup import EARLIER, DedupDecision, as_hash_array, decide, distinct_in_order, first_occurrences
from pipelines.dedup.index import ENTRY, MAX_FOLDERS, bucket_numbers


def bucket_ranges(*, buckets: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous bucket ranges ``[lo, hi)`` covering ``0..buckets``, as equal as the index's
    folders allow: a range boundary never splits a folder, so each shard writes whole folders and the
    index a sharded run leaves is byte-identical to an unsharded one."""
    if not 1 <= shards <= buckets:
        raise ValueError(f"shards={shards}: use 1..{buckets} (dedup.buckets)")
    folders = min(buckets, MAX_FOLDERS)
    units = min(shards, folders)
    if shards > folders:
        raise ValueError(f"shards={shards}: at most {folders}, one per index folder")
    cuts = [(-(-(folders * i // units) * buckets // folders)) for i in range(units + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(units)]


def shard_of(hashes: Sequence[bytes] | np.ndarray | bytes, *, buckets: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """The shard (index into ``ranges``) of each record, from its hash's bucket."""
    bucket = bucket_numbers(as_hash_array(hashes), buckets)
    upper = np.array([hi for _lo, hi in ranges], np.int64)
    return np.searchsorted(upper, bucket, side="right")


def shard_records(hashes: Sequence[bytes] | np.ndarray | bytes, *, buckets: int, bucket_range: tuple[int, int]) -> np.ndarray:
    """Indices (in arrival order) of the records whose hash bucket lies in ``bucket_range``."""
    lo, hi = bucket_range
    bucket = bucket_numbers(as_hash_array(hashes), buckets)
    return np.flatnonzero((bucket >= lo) & (bucket < hi))


def decide_shard(
    *, hashes: Sequence[bytes] | np.ndarray | bytes, days: Sequence[int] | np.ndarray, start_day: int, end_day: int,
    index, buckets: int, bucket_range: tuple[int, int],
) -> DedupDecision:
    """Decide the records of one bucket range of a partition, in arrival order, against the index.

    Args:
        hashes, days: the whole partition's records in (arrival date, key, line) order, or just the
            records a shard task was given, still in that order (the indices in the result are
            positions in what is passed).
        index: the domain's ``HashIndex``; only the range's buckets are looked up.
        buckets: the index's bucket count.
        bucket_range: ``[lo, hi)``, e.g. one of ``bucket_ranges(...)``.

    Returns:
        a decision whose ``kept`` and ``duplicates`` index into ``hashes``; records outside the range
        appear in neither. ``merge_decisions`` unites the shards of a partition.
    """
    array = as_hash_array(hashes)
    mine = shard_records(array, buckets=buckets, bucket_range=bucket_range)
    sub = array[mine]
    first_index = first_occurrences(sub)
    distinct = distinct_in_order(sub, first_index)
    earliest = index.lookup(distinct) if len(distinct) else np.empty(0, np.int32)
    local = decide(hashes=sub, days=np.asarray(days, np.int64)[mine], start_day=start_day, end_day=end_day,
                   earliest=earliest, first_index=first_index)
    return DedupDecision(
        kept=tuple(mine[list(local.kept)].tolist()) if local.kept else (),
        duplicates=tuple((int(mine[i]), reason, day) for i, reason, day in local.duplicates),
        displaced_days=local.displaced_days,
        entries=local.entries,
    )


def _first_records(decision: DedupDecision) -> np.ndarray:
    """The record index of each entry of a decision: its hash's first record, which is kept or a
    duplicate of an earlier partition; entries are in order of first appearance."""
    firsts = list(decision.kept) + [i for i, reason, _day in decision.duplicates if reason == EARLIER]
    return np.sort(np.array(firsts, np.int64))


def merge_decisions(decisions: Sequence[DedupDecision]) -> DedupDecision:
    """The union of shard decisions of one partition: equal to the unsharded decision."""
    firsts = [_first_records(d) for d in decisions]
    at = np.concatenate(firsts) if firsts else np.empty(0, np.int64)
    entries = np.concatenate([d.entries for d in decisions]) if decisions else np.empty(0, ENTRY)
    order = np.argsort(at, kind="stable")
    return DedupDecision(
        kept=tuple(sorted(i for d in decisions for i in d.kept)),
        duplicates=tuple(sorted(x for d in decisions for x in d.duplicates)),
        displaced_days=tuple(sorted({day for d in decisions for day in d.displaced_days})),
        entries=entries[order] if len(entries) else np.empty(0, ENTRY),
    )
