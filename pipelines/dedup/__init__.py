"""Exact dedup with backfill-safe semantics.

A record is kept in partition W iff it is the first occurrence of its content hash over all ingested
data ordered by (arrival date, file key, line). Partitions are disjoint date ranges, so this is: the
record is the first occurrence within W, and no earlier partition's signature set holds the hash.
Signature sets depend only on the input, never on the order runs happened in, so any order of runs and
backfills converges to the in-order result (later partitions that lose records are re-published).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.dedup.index import ABSENT, make_entries
from pipelines.dedup.normalize import content_hash, content_hashes, normalize

__all__ = ["DedupDecision", "content_hash", "content_hashes", "decide", "normalize"]

WITHIN = "duplicate_within_partition"
EARLIER = "duplicate_of_earlier_partition"


@dataclass(frozen=True)
class DedupDecision:
    """Which records of a partition are kept, and what the partition does to others.

    Attributes:
        kept: indices of kept records, in input order.
        duplicates: ``(index, reason, first_day)`` for each dropped record; ``first_day`` is the
            earliest arrival day (days since epoch) of its hash.
        displaced_days: arrival days after this partition whose partitions had kept a hash that
            this partition now owns: those partitions must be re-published.
        entries: this partition's signature set (hash, first day within it) for the index.
    """

    kept: tuple[int, ...]
    duplicates: tuple[tuple[int, str, int], ...]
    displaced_days: tuple[int, ...]
    entries: np.ndarray


def decide(
    *, hashes: Sequence[bytes], days: Sequence[int], start_day: int, end_day: int, earliest: np.ndarray
) -> DedupDecision:
    """Decide keep/drop for one partition.

    Args:
        hashes: content hash of each record, records in (arrival date, key, line) order.
        days: arrival day of each record (days since epoch), same order.
        start_day: first day of the partition's interval.
        end_day: day after the interval's last day.
        earliest: for each *distinct* hash in order of first appearance in ``hashes``, the earliest
            day the index knows (``ABSENT`` if unknown). Obtain it with ``HashIndex.lookup``.
    """
    n = len(hashes)
    first: dict[bytes, int] = {}
    setdefault = first.setdefault
    # Index of each record's first occurrence in this partition (records come in dedup order).
    first_index = np.fromiter((setdefault(h, i) for i, h in enumerate(hashes)), np.int64, n)
    firsts = np.fromiter(first.values(), np.int64, len(first))  # increasing: order of first appearance
    if len(earliest) != len(firsts):
        raise ValueError(f"earliest has {len(earliest)} entries for {len(firsts)} distinct hashes")
    day = np.asarray(days, dtype=np.int64).reshape(n)
    known = np.asarray(earliest, dtype=np.int64)
    position = np.empty(n, np.int64)
    position[firsts] = np.arange(len(firsts))
    distinct_of = position[first_index]  # each record's distinct hash
    first_day = np.minimum(day[firsts], known)  # earliest day of each distinct hash, all data known
    owner_earlier = known < start_day
    is_first = first_index == np.arange(n)
    kept = np.flatnonzero(is_first & ~owner_earlier[distinct_of])
    within = np.flatnonzero(~is_first)
    earlier = np.flatnonzero(is_first & owner_earlier[distinct_of])
    duplicates = sorted(
        [(int(i), WITHIN, int(d)) for i, d in zip(within.tolist(), first_day[distinct_of[within]].tolist())]
        + [(int(i), EARLIER, int(d)) for i, d in zip(earlier.tolist(), known[distinct_of[earlier]].tolist())]
    )
    kept_known = known[distinct_of[kept]]
    displaced = np.unique(kept_known[(kept_known != ABSENT) & (kept_known >= end_day)])
    return DedupDecision(
        kept=tuple(kept.tolist()), duplicates=tuple(duplicates), displaced_days=tuple(displaced.tolist()),
        entries=make_entries(list(first), day[firsts].tolist(), presorted_unique=True),
    )


def distinct_in_order(hashes: Sequence[bytes]) -> list[bytes]:
    """The distinct hashes in order of first appearance (what ``decide`` expects lookups for)."""
    return list(dict.fromkeys(hashes))
