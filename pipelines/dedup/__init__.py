"""Exact dedup with backfill-safe semantics.

A record is kept in partition W iff it is the first occurrence of its content hash over all ingested
data ordered by (arrival date, file key, line). Partitions are disjoint date ranges, so this is: the
record is the first occurrence within W, and no earlier partition's signature set holds the hash.
Signature sets depend only on the input, never on the order runs happened in, so any order of runs and
backfills converges to the in-order result (later partitions that lose records are re-published).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.dedup.index import ABSENT, ENTRY
from pipelines.dedup.normalize import content_hash, content_hashes, normalize, packed_hashes

_normalize_module = sys.modules["pipelines.dedup.normalize"]  # the name ``normalize`` here is the function

__all__ = ["DedupDecision", "as_hash_array", "content_hash", "content_hashes", "decide", "distinct_in_order",
           "dedup_partition", "first_occurrences", "normalize", "packed_hashes"]

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


def as_hash_array(hashes: Sequence[bytes] | np.ndarray | bytes) -> np.ndarray:
    """32-byte digests as a numpy ``S32`` array: a list of digests, an ``S32`` array, or packed bytes
    (``normalize.packed_hashes``). Element-wise reads of an ``S32`` array drop trailing NUL bytes, so
    code here compares arrays, never their elements as Python bytes."""
    if isinstance(hashes, (bytes, bytearray, memoryview)):
        if len(hashes) % 32:
            raise ValueError(f"packed hashes of {len(hashes)} bytes: not a multiple of 32")
        return np.frombuffer(hashes, dtype="S32")
    if isinstance(hashes, np.ndarray):
        return hashes.astype("S32", copy=False)
    return np.array(list(hashes), dtype="S32") if len(hashes) else np.empty(0, "S32")


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """For each record, the index of the first record with the same hash (int64).

    Groups by the first 8 digest bytes (one integer sort), then checks whole digests; a 64-bit prefix
    collision between different digests, which SHA-256 makes practically impossible, falls back to
    exact grouping, so the result is exact either way.
    """
    n = len(hashes)
    if n == 0:
        return np.empty(0, np.int64)
    fasthash = _normalize_module._fasthash
    if fasthash is not None:  # one pass of a hash table in C: exact, and no sort
        return np.frombuffer(fasthash.first_occurrences(np.ascontiguousarray(hashes)), dtype=np.int64)
    words = np.ascontiguousarray(hashes).view(np.uint64).reshape(n, 4)
    key = words[:, 0]
    order = np.argsort(key, kind="stable")  # stable: the first of equal keys is the first occurrence
    ordered = key[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    group_first = order[starts]
    first_index = np.empty(n, np.int64)
    first_index[order] = group_first[np.cumsum(starts) - 1]
    if not (words == words[first_index]).all():  # a prefix collision: group exactly instead
        first: dict[bytes, int] = {}
        raw = hashes.tobytes()
        first_index = np.fromiter((first.setdefault(raw[i * 32:(i + 1) * 32], i) for i in range(n)), np.int64, n)
    return first_index


def distinct_in_order(hashes: Sequence[bytes] | np.ndarray | bytes, first_index: np.ndarray | None = None) -> np.ndarray:
    """The distinct hashes in order of first appearance (what ``decide`` expects lookups for), ``S32``.
    ``first_index`` is ``first_occurrences(hashes)`` when the caller has it already."""
    array = as_hash_array(hashes)
    if first_index is None:
        first_index = first_occurrences(array)
    return array[first_index == np.arange(len(array))]


def decide(
    *, hashes: Sequence[bytes] | np.ndarray | bytes, days: Sequence[int] | np.ndarray, start_day: int, end_day: int,
    earliest: np.ndarray, first_index: np.ndarray | None = None,
) -> DedupDecision:
    """Decide keep/drop for one partition.

    Args:
        hashes: content hash of each record, records in (arrival date, key, line) order: 32-byte
            digests, an ``S32`` array or packed bytes.
        days: arrival day of each record (days since epoch), same order.
        start_day: first day of the partition's interval.
        end_day: day after the interval's last day.
        earliest: for each *distinct* hash in order of first appearance in ``hashes``, the earliest
            day the index knows (``ABSENT`` if unknown). Obtain it with ``HashIndex.lookup``.
        first_index: ``first_occurrences(hashes)`` when the caller has it already.
    """
    hashes = as_hash_array(hashes)
    n = len(hashes)
    if first_index is None:
        first_index = first_occurrences(hashes)  # each record's first occurrence in this partition
    is_first = first_index == np.arange(n)
    firsts = np.flatnonzero(is_first)  # increasing: order of first appearance
    if len(earliest) != len(firsts):
        raise ValueError(f"earliest has {len(earliest)} entries for {len(firsts)} distinct hashes")
    day = np.asarray(days, dtype=np.int64).reshape(n)
    known = np.asarray(earliest, dtype=np.int64)
    position = np.empty(n, np.int64)
    position[firsts] = np.arange(len(firsts))
    distinct_of = position[first_index]  # each record's distinct hash
    first_day = np.minimum(day[firsts], known)  # earliest day of each distinct hash, all data known
    owner_earlier = known < start_day
    kept = np.flatnonzero(is_first & ~owner_earlier[distinct_of])
    within = np.flatnonzero(~is_first)
    earlier = np.flatnonzero(is_first & owner_earlier[distinct_of])
    duplicates = sorted(
        [(i, WITHIN, d) for i, d in zip(within.tolist(), first_day[distinct_of[within]].tolist())]
        + [(i, EARLIER, d) for i, d in zip(earlier.tolist(), known[distinct_of[earlier]].tolist())]
    )
    kept_known = known[distinct_of[kept]]
    displaced = np.unique(kept_known[(kept_known != ABSENT) & (kept_known >= end_day)])
    entries = np.empty(len(firsts), dtype=ENTRY)
    entries["h"] = hashes[firsts]
    entries["d"] = day[firsts]
    return DedupDecision(
        kept=tuple(kept.tolist()), duplicates=tuple(duplicates), displaced_days=tuple(displaced.tolist()),
        entries=entries,  # one per distinct hash, unsorted: HashIndex.add sorts what it writes
    )


def dedup_partition(
    *, texts: Sequence[str], arrival_dates: Sequence[str], start: dt.date, end: dt.date, index,
    timings: dict[str, float] | None = None,
) -> tuple[bytes, DedupDecision]:
    """Hash, look up and decide one partition: the whole dedup step but the index write.

    Args:
        texts: each record's (governed) text, records in (arrival date, key, line) order.
        arrival_dates: each record's arrival date, ISO ``YYYY-MM-DD``.
        start, end: the partition's interval (end exclusive).
        index: the domain's ``HashIndex``.
        timings: if given, seconds per sub-step are added under ``hash``, ``lookup`` and ``decide``
            (``benchmarks/ingest.py`` prints them).

    Returns:
        the packed content hashes (32 bytes per record) and the decision.
    """
    from pipelines.partition import day_number

    clock = time.perf_counter
    t0 = clock()
    packed = packed_hashes(texts)
    t1 = clock()
    hashes = as_hash_array(packed)
    day_of = {d: day_number(dt.date.fromisoformat(d)) for d in set(arrival_dates)}
    days = np.fromiter(map(day_of.__getitem__, arrival_dates), np.int64, len(arrival_dates))
    first_index = first_occurrences(hashes)
    distinct = distinct_in_order(hashes, first_index)
    t2 = clock()
    earliest = index.lookup(distinct) if len(distinct) else np.empty(0, np.int32)
    t3 = clock()
    decision = decide(hashes=hashes, days=days, start_day=day_number(start), end_day=day_number(end),
                      earliest=earliest, first_index=first_index)
    t4 = clock()
    if timings is not None:
        for name, seconds in (("hash", t1 - t0), ("lookup", t3 - t2), ("decide", (t2 - t1) + (t4 - t3))):
            timings[name] = timings.get(name, 0.0) + seconds
    return packed, decision
