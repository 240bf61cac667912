"""Sharded dedup: a week split into bucket ranges, decided by separate tasks, unites to the unsharded decision."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipelines.dedup import decide, distinct_in_order
from pipelines.dedup.index import ENTRY, HashIndex, merge_min
from pipelines.dedup.shard import bucket_ranges, decide_shard, merge_decisions, shard_of
from pipelines.storage import LocalObjectStore

START, END = 20_000, 20_007
BUCKETS = 16


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def week() -> tuple[np.ndarray, np.ndarray]:
    """600 records: new texts, copies within the week, copies of earlier and of later weeks, in arrival order."""
    rng = np.random.default_rng(7)
    names = [f"new{i}" for i in range(300)] + [f"old{i}" for i in range(60)] + [f"later{i}" for i in range(40)]
    picks = list(range(len(names))) + rng.integers(0, len(names), 200).tolist()  # 200 copies within the week
    rng.shuffle(picks)
    hashes = np.array([h(names[i]) for i in picks], dtype="S32")
    days = np.sort(rng.integers(START, END, len(picks)))
    return hashes, days


def seeded_index(tmp_path) -> HashIndex:
    index = HashIndex(LocalObjectStore(tmp_path), "index/legal", buckets=BUCKETS, compact_after=3)
    earlier = np.empty(60, ENTRY)
    earlier["h"], earlier["d"] = [h(f"old{i}") for i in range(60)], START - 14 + np.arange(60) % 7
    later = np.empty(40, ENTRY)
    later["h"], later["d"] = [h(f"later{i}") for i in range(40)], END + 7 * (np.arange(40) % 3)
    index.add(merge_min([earlier]), tag="earlier")
    index.add(merge_min([later]), tag="later")
    return index


def unsharded(index: HashIndex, hashes: np.ndarray, days: np.ndarray):
    return decide(hashes=hashes, days=days, start_day=START, end_day=END, earliest=index.lookup(distinct_in_order(hashes)))


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 16])
def test_union_of_bucket_range_shards_equals_the_unsharded_decision(tmp_path, shards):
    hashes, days = week()
    whole = unsharded(seeded_index(tmp_path / "whole"), hashes, days)
    index = seeded_index(tmp_path / "sharded")
    ranges = bucket_ranges(buckets=BUCKETS, shards=shards)
    parts = [decide_shard(hashes=hashes, days=days, start_day=START, end_day=END, index=index, buckets=BUCKETS,
                          bucket_range=r) for r in ranges]
    merged = merge_decisions(parts[::-1])  # the order shards finish in does not matter
    assert merged.kept == whole.kept
    assert merged.duplicates == whole.duplicates
    assert merged.displaced_days == whole.displaced_days == (END, END + 7, END + 14)
    assert merged.entries.tobytes() == whole.entries.tobytes()
    # Every record is decided by exactly one shard.
    seen = sorted([i for p in parts for i in p.kept] + [i for p in parts for i, _r, _d in p.duplicates])
    assert seen == list(range(len(hashes)))
    assert {reason for _i, reason, _d in whole.duplicates} == {"duplicate_within_partition", "duplicate_of_earlier_partition"}


def test_shards_adding_their_signatures_leave_the_index_an_unsharded_run_leaves(tmp_path):
    hashes, days = week()
    whole_index = seeded_index(tmp_path / "whole")
    whole_keys = whole_index.add(unsharded(whole_index, hashes, days).entries, tag="2024-10-07")
    index = seeded_index(tmp_path / "sharded")
    keys = []
    for r in bucket_ranges(buckets=BUCKETS, shards=4):
        part = decide_shard(hashes=hashes, days=days, start_day=START, end_day=END, index=index, buckets=BUCKETS, bucket_range=r)
        keys += index.add(part.entries, tag="2024-10-07")
    assert sorted(keys) == sorted(whole_keys)  # names derive from bytes: the same segments
    listed = [[o.key for o in i.store.list("index/legal/")] for i in (whole_index, index)]
    assert listed[0] == listed[1]


def test_bucket_ranges_cover_every_bucket_once_and_shard_of_agrees():
    assert bucket_ranges(buckets=16, shards=3) == [(0, 5), (5, 10), (10, 16)]
    assert bucket_ranges(buckets=1024, shards=2) == [(0, 512), (512, 1024)]
    hashes = np.array([h(str(i)) for i in range(200)], dtype="S32")
    ranges = bucket_ranges(buckets=16, shards=3)
    shard = shard_of(hashes, buckets=16, ranges=ranges)
    from pipelines.dedup.index import bucket_numbers

    bucket = bucket_numbers(hashes, 16)
    assert all(ranges[s][0] <= b < ranges[s][1] for s, b in zip(shard.tolist(), bucket.tolist()))
    with pytest.raises(ValueError, match="shards=17: use 1..16"):
        bucket_ranges(buckets=16, shards=17)
