"""The two-level index: partial reads through segment summaries, folders at large bucket counts,
size-tiered compaction, and indexes written before this layout."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipelines.dedup.index import (
    ABSENT, ENTRY, MAX_FOLDERS, HashIndex, decode_segment, encode_segment, merge_min, plan_compaction,
)
from pipelines.dedup.segment import BLOCK, encode_indexed_segment, summary_size
from pipelines.storage import LocalObjectStore

PREFIX = "index/legal"


def hashes(tag: str, n: int) -> np.ndarray:
    return np.array([hashlib.sha256(f"{tag}-{i}".encode()).digest() for i in range(n)], dtype="S32")


def entries(hs: np.ndarray, day: int) -> np.ndarray:
    out = np.empty(len(hs), dtype=ENTRY)
    out["h"], out["d"] = hs, day
    return merge_min([out])


def keys(store: LocalObjectStore) -> list[str]:
    return [o.key for o in store.list(f"{PREFIX}/")]


class NoRanges:
    """A store that can only GET whole objects."""

    def __init__(self, inner: LocalObjectStore) -> None:
        self.inner = inner

    def __getattr__(self, name):
        if name == "get_range":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_lookup_reads_the_summary_and_the_blocks_that_can_hold_its_hashes(tmp_path):
    store = LocalObjectStore(tmp_path)
    big = hashes("old", 20_000)
    HashIndex(store, PREFIX, buckets=1).add(entries(big, 100), tag="w1")
    (key,) = keys(store)
    size = next(store.list(key)).size
    reader = HashIndex(store, PREFIX, buckets=1)
    wanted = np.concatenate([big[[3, 999, 17_000]], hashes("new", 50)])
    got = reader.lookup(wanted)
    assert got.tolist() == [100, 100, 100] + [ABSENT] * 50
    # The summary (~6 % of the segment) and a few blocks (the three hits, rarely a false positive).
    summary = summary_size(store.get(key))
    assert reader.stats.bytes_read <= summary + 5 * BLOCK * ENTRY.itemsize < 0.07 * size
    assert reader.stats.gets <= 1 + 3 + 2
    assert reader.stats.segments_read == 1


def test_partial_reads_are_exact_when_8_byte_prefixes_tie_across_a_block_boundary(tmp_path):
    store = LocalObjectStore(tmp_path)
    base = np.sort(hashes("fill", 4 * BLOCK * 10))
    tied = np.array([b"\x80" * 8 + bytes([i]) * 24 for i in range(1, 2 * BLOCK, 2)], dtype="S32")  # one prefix, a block's worth
    HashIndex(store, PREFIX, buckets=1).add(merge_min([entries(base, 5), entries(tied, 9)]), tag="w1")
    reader = HashIndex(store, PREFIX, buckets=1)
    absent = np.array([b"\x80" * 8 + bytes([i]) * 24 for i in range(2, 2 * BLOCK, 2)], dtype="S32")
    got = reader.lookup(np.concatenate([tied[::7], absent[::5], base[::97]]))
    assert got.tolist() == [9] * len(tied[::7]) + [ABSENT] * len(absent[::5]) + [5] * len(base[::97])


def test_a_store_without_ranged_reads_gives_the_same_answers(tmp_path):
    store = LocalObjectStore(tmp_path)
    old = hashes("old", 5_000)
    HashIndex(store, PREFIX, buckets=2).add(entries(old, 7), tag="w1")
    wanted = np.concatenate([old[::50], hashes("new", 20)])
    plain = HashIndex(NoRanges(store), PREFIX, buckets=2).lookup(wanted)
    ranged = HashIndex(store, PREFIX, buckets=2).lookup(wanted)
    assert plain.tolist() == ranged.tolist() == [7] * 100 + [ABSENT] * 20


def test_a_week_writes_at_most_max_folders_objects_however_many_buckets(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=65536)
    week = hashes("w", 5_000)
    written = index.add(entries(week, 3), tag="w1")
    assert len(written) == len(keys(store)) <= MAX_FOLDERS
    assert all(f"{PREFIX}/b65536/g" in k for k in written)
    assert (HashIndex(store, PREFIX, buckets=65536).lookup(week[::10]) == 3).all()


def test_an_index_written_before_the_layout_is_read_and_folded_into_it(tmp_path):
    """v1 segments (no summary) in per-bucket folders, even at B > MAX_FOLDERS, as the earlier code wrote them."""
    store = LocalObjectStore(tmp_path)
    buckets = 1024
    old = entries(hashes("legacy", 3_000), 40)
    prefix4 = np.frombuffer(old["h"].tobytes(), ">u4").reshape(-1, 8)[:, 0].astype(np.int64) % buckets
    for bucket in np.unique(prefix4).tolist():
        part = old[prefix4 == bucket]
        store.put(f"{PREFIX}/b{buckets}/{bucket:04x}/w-2026-01-05-legacy{bucket}.seg", encode_segment(part))
    index = HashIndex(store, PREFIX, buckets=buckets, compact_after=2)
    assert (index.lookup(old["h"]) == 40).all()
    assert index.stats.compactions > 0  # a folder of 4 buckets held more than 2 legacy segments
    assert (HashIndex(store, PREFIX, buckets=buckets).lookup(old["h"]) == 40).all()
    assert all(f"/b{buckets}/g" in k for k in keys(store))  # every legacy segment was folded into a folder
    union = merge_min([decode_segment(store.get(k)) for k in keys(store)])
    assert union.tobytes() == old.tobytes()


def test_v1_segments_at_small_bucket_counts_keep_working_and_compact_to_v2(tmp_path):
    store = LocalObjectStore(tmp_path)
    first = entries(hashes("a", 300), 10)
    store.put(f"{PREFIX}/b1/0000/w-2026-01-05-old.seg", encode_segment(first))
    index = HashIndex(store, PREFIX, buckets=1, compact_after=2)
    index.add(entries(hashes("b", 300), 17), tag="2026-01-12")
    index.add(entries(hashes("c", 300), 24), tag="2026-01-19")
    got = index.lookup(np.concatenate([hashes("a", 300), hashes("c", 300)]))
    assert got.tolist() == [10] * 300 + [24] * 300
    (key,) = keys(store)
    assert "/c-" in key and store.get(key).startswith(b"DDXSEG2\n")


@pytest.mark.parametrize(("sizes", "compact_after", "merged"), [
    ([5, 5, 5], 2, [0, 1, 2]),                            # equal segments: all of them
    ([100] + [1] * 9, 8, list(range(1, 10))),             # the weekly ones, not the large old one
    ([100, 30, 9, 1, 1, 1, 1, 1], 8, []),                 # not more than compact_after
    ([100, 30, 9] + [1] * 7, 8, list(range(3, 10))),      # the small ones; the 9 is larger than their merge
    ([100, 30, 6] + [1] * 7, 8, list(range(2, 10))),      # ... and a segment their merge outgrows joins them
])
def test_plan_compaction_merges_the_smallest_segments(sizes, compact_after, merged):
    assert plan_compaction(sizes, compact_after) == merged


def test_tiered_compaction_rewrites_each_entry_a_logarithmic_number_of_times(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=1, compact_after=4)
    weeks, per_week = 64, 200
    for week in range(weeks):
        index.lookup(hashes(f"probe{week}", 5))
        index.add(entries(hashes(f"w{week}", per_week), week), tag=f"w{week:03d}")
    # Rewriting the whole folder at each compaction would rewrite ~weeks²/(2·(compact_after+1)) weeks' worth.
    assert index.stats.entries_rewritten < 5 * weeks * per_week
    assert len(keys(store)) <= 4 + 1
    assert (HashIndex(store, PREFIX, buckets=1).lookup(hashes("w3", per_week)) == 3).all()


def test_a_truncated_v2_segment_is_reported_as_corrupt(tmp_path):
    store = LocalObjectStore(tmp_path)
    data = encode_indexed_segment(entries(hashes("x", 2_000), 1))
    bad = f"{PREFIX}/b1/0000/w-w1-cut.seg"
    store.put(bad, data[:-36])
    with pytest.raises(ValueError, match=f"index segment {bad} is corrupt"):
        HashIndex(store, PREFIX, buckets=1).lookup(hashes("x", 3))
