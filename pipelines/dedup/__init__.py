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
    first_seen: dict[bytes, int] = {}
    kept: list[int] = []
    within: list[tuple[int, bytes]] = []
    duplicates: list[tuple[int, str, int]] = []
    distinct: list[bytes] = []
    distinct_day: list[int] = []
    for i, h in enumerate(hashes):
        if h in first_seen:
            within.append((i, h))
            continue
        first_seen[h] = i
        distinct.append(h)
        distinct_day.append(days[i])
    if len(earliest) != len(distinct):
        raise ValueError(f"earliest has {len(earliest)} entries for {len(distinct)} distinct hashes")
    first_day = {h: min(days[first_seen[h]], int(earliest[j])) for j, h in enumerate(distinct)}
    duplicates.extend((i, WITHIN, first_day[h]) for i, h in within)
    displaced: set[int] = set()
    owner_earlier = (earliest < start_day)
    for j, h in enumerate(distinct):
        i = first_seen[h]
        if owner_earlier[j]:
            duplicates.append((i, EARLIER, int(earliest[j])))
            continue
        kept.append(i)
        if earliest[j] != ABSENT and earliest[j] >= end_day:
            displaced.add(int(earliest[j]))
    kept.sort()
    duplicates.sort()
    return DedupDecision(
        kept=tuple(kept), duplicates=tuple(duplicates), displaced_days=tuple(sorted(displaced)),
        entries=make_entries(distinct, distinct_day),
    )


def distinct_in_order(hashes: Sequence[bytes]) -> list[bytes]:
    """The distinct hashes in order of first appearance (what ``decide`` expects lookups for)."""
    return list(dict.fromkeys(hashes))
