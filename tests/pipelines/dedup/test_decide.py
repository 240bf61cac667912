"""decide(): keep/drop for one partition against the index's earliest days."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.dedup import decide, distinct_in_order
from pipelines.dedup.index import ABSENT

START, END = 100, 107  # the partition's days: [100, 107)


def e(*days: int) -> np.ndarray:
    return np.array(days, dtype=np.int32)


def entries_dict(decision) -> dict[bytes, int]:
    return {bytes(x["h"]): int(x["d"]) for x in decision.entries}


def test_all_new_records_are_kept():
    hashes = [b"a" * 32, b"b" * 32, b"c" * 32]
    decision = decide(hashes=hashes, days=[100, 101, 106], start_day=START, end_day=END,
                      earliest=e(ABSENT, ABSENT, ABSENT))
    assert decision.kept == (0, 1, 2)
    assert decision.duplicates == ()
    assert decision.displaced_days == ()
    assert entries_dict(decision) == {b"a" * 32: 100, b"b" * 32: 101, b"c" * 32: 106}


def test_within_partition_duplicates_point_at_the_first_occurrence():
    a, b = b"a" * 32, b"b" * 32
    decision = decide(hashes=[a, b, a, a, b], days=[100, 101, 102, 105, 106], start_day=START, end_day=END,
                      earliest=e(ABSENT, ABSENT))
    assert decision.kept == (0, 1)
    assert decision.duplicates == (
        (2, "duplicate_within_partition", 100),
        (3, "duplicate_within_partition", 100),
        (4, "duplicate_within_partition", 101),
    )
    assert entries_dict(decision) == {a: 100, b: 101}
    assert len(decision.entries) == 2


def test_earlier_partition_duplicates_are_dropped_with_the_earliest_day():
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    decision = decide(hashes=[a, b, c], days=[100, 102, 103], start_day=START, end_day=END,
                      earliest=e(93, ABSENT, 99))
    assert decision.kept == (1,)
    assert decision.duplicates == ((0, "duplicate_of_earlier_partition", 93),
                                   (2, "duplicate_of_earlier_partition", 99))
    assert decision.displaced_days == ()
    # The signature set holds every distinct hash with its first day in this partition.
    assert entries_dict(decision) == {a: 100, b: 102, c: 103}


def test_hash_already_indexed_from_this_partition_is_kept():
    # A rerun: the index already holds this partition's own entries.
    decision = decide(hashes=[b"a" * 32, b"b" * 32], days=[100, 104], start_day=START, end_day=END,
                      earliest=e(START, 104))
    assert decision.kept == (0, 1)
    assert decision.duplicates == ()
    assert decision.displaced_days == ()


def test_hashes_owned_by_later_partitions_are_displaced():
    a, b, c, d = (bytes([i]) * 32 for i in range(1, 5))
    decision = decide(hashes=[a, b, c, d], days=[100, 101, 102, 103], start_day=START, end_day=END,
                      earliest=e(END, 121, ABSENT, END))
    assert decision.kept == (0, 1, 2, 3)
    assert decision.duplicates == ()
    assert decision.displaced_days == (END, 121)


def test_within_duplicate_of_an_earlier_partition_hash_reports_the_earliest_day():
    # DedupDecision documents first_day as "the earliest arrival day of its hash": for a hash an earlier
    # partition owns (day 93), the second copy in this partition was first seen on day 93, not day 100.
    a = b"a" * 32
    decision = decide(hashes=[a, a], days=[100, 101], start_day=START, end_day=END, earliest=e(93))
    assert decision.kept == ()
    assert decision.duplicates == ((0, "duplicate_of_earlier_partition", 93),
                                   (1, "duplicate_within_partition", 93))


def test_earliest_length_must_match_distinct_hashes():
    with pytest.raises(ValueError, match="earliest has 3 entries for 2 distinct hashes"):
        decide(hashes=[b"a" * 32, b"b" * 32, b"a" * 32], days=[100, 100, 100], start_day=START, end_day=END,
               earliest=e(ABSENT, ABSENT, ABSENT))


def test_empty_partition():
    decision = decide(hashes=[], days=[], start_day=START, end_day=END, earliest=e())
    assert (decision.kept, decision.duplicates, decision.displaced_days, len(decision.entries)) == ((), (), (), 0)


def test_distinct_in_order():
    assert distinct_in_order([b"b", b"a", b"b", b"c", b"a"]).tolist() == [b"b", b"a", b"c"]
