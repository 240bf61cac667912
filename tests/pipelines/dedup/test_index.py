"""HashIndex on a local folder: min-merge semantics, create-only segments, compaction, corruption, interleaving."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipelines.dedup.index import ABSENT, ENTRY, HashIndex, decode_segment, encode_segment, merge_min
from pipelines.storage import LocalObjectStore

PREFIX = "index/legal"


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def make_entries(hashes: list[bytes], days: list[int]) -> np.ndarray:
    """Index entries for (hash, day) pairs, merged: duplicates keep their minimum day."""
    raw = np.empty(len(hashes), dtype=ENTRY)
    if hashes:
        raw["h"] = hashes
        raw["d"] = days
    return merge_min([raw])


def entries(pairs: dict[str, int]) -> np.ndarray:
    return make_entries([h(k) for k in pairs], list(pairs.values()))


def as_dict(array: np.ndarray) -> dict[bytes, int]:
    return {bytes(e["h"]): int(e["d"]) for e in array}


def segment_keys(store: LocalObjectStore) -> list[str]:
    return [o.key for o in store.list(f"{PREFIX}/")]


def lookup(index: HashIndex, names: list[str]) -> list[int]:
    return index.lookup(np.array([h(n) for n in names], dtype="S32")).tolist()


# --- merge_min ---------------------------------------------------------------------------------

A = {"x": 10, "y": 20, "z": 5}
B = {"x": 7, "y": 25, "w": 30}


def test_merge_min_keeps_min_day_per_hash_sorted_by_hash():
    merged = merge_min([entries(A), entries(B)])
    assert as_dict(merged) == {h("x"): 7, h("y"): 20, h("z"): 5, h("w"): 30}
    assert list(merged["h"]) == sorted(merged["h"])


def test_merge_min_is_commutative_and_idempotent():
    a, b = entries(A), entries(B)
    assert merge_min([a, b]).tobytes() == merge_min([b, a]).tobytes()
    assert merge_min([a, a]).tobytes() == a.tobytes()
    assert merge_min([merge_min([a, b]), b]).tobytes() == merge_min([a, b]).tobytes()


def test_merge_min_of_nothing_is_empty():
    assert len(merge_min([])) == 0
    assert len(merge_min([np.empty(0, dtype=ENTRY)])) == 0
    assert merge_min([]).dtype == ENTRY


def test_merge_keeps_min_day_of_duplicate_hashes():
    assert as_dict(make_entries([h("x"), h("x"), h("y")], [9, 4, 6])) == {h("x"): 4, h("y"): 6}


def test_segment_roundtrip():
    e = entries(A)
    assert decode_segment(encode_segment(e)).tobytes() == e.tobytes()


# --- HashIndex ---------------------------------------------------------------------------------

def test_add_then_lookup(tmp_path):
    index = HashIndex(LocalObjectStore(tmp_path), PREFIX, buckets=4)
    keys = index.add(entries(A), tag="2024-06-03")
    assert lookup(index, ["x", "y", "z", "absent"]) == [10, 20, 5, ABSENT]
    assert len(keys) == len(set(keys)) == len(segment_keys(index.store))
    assert all(k.startswith(f"{PREFIX}/b4/") and "/w-2024-06-03-" in k and k.endswith(".seg") for k in keys)


def test_lookup_on_empty_index_and_empty_batch(tmp_path):
    index = HashIndex(LocalObjectStore(tmp_path), PREFIX, buckets=4)
    assert lookup(index, ["x", "y"]) == [ABSENT, ABSENT]
    assert index.lookup(np.empty(0, dtype="S32")).tolist() == []
    assert index.add(np.empty(0, dtype=ENTRY), tag="empty") == []
    assert segment_keys(index.store) == []


def test_re_adding_identical_entries_writes_no_new_segment(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=4)
    first = index.add(entries(A), tag="2024-06-03")
    before = segment_keys(store)
    written = index.stats.segments_written
    second = HashIndex(store, PREFIX, buckets=4).add(entries(A), tag="2024-06-03")
    again = index.add(entries(A), tag="2024-06-03")
    assert first == second == again
    assert segment_keys(store) == before
    assert index.stats.segments_written == written


def test_compaction_leaves_one_c_segment_and_same_lookups(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=1, compact_after=2)
    index.add(entries({"x": 10, "y": 12}), tag="w1")
    index.add(entries({"x": 3, "z": 14}), tag="w2")
    index.add(entries({"w": 20, "y": 11}), tag="w3")
    assert len(segment_keys(store)) == 3
    names = ["x", "y", "z", "w", "absent"]
    expected = [3, 11, 14, 20, ABSENT]
    assert lookup(index, names) == expected
    assert index.stats.compactions == 1
    keys = segment_keys(store)
    assert len(keys) == 1
    assert keys[0].startswith(f"{PREFIX}/b1/0000/c-")
    assert lookup(index, names) == expected
    assert lookup(HashIndex(store, PREFIX, buckets=1, compact_after=2), names) == expected
    # New weeks add next to the compaction until the bucket again holds more than compact_after segments.
    index.add(entries({"v": 30}), tag="w4")
    keys = segment_keys(store)
    assert len(keys) == 2
    assert sum("/c-" in k for k in keys) == 1
    assert lookup(index, ["v", "x"]) == [30, 3]
    assert index.stats.compactions == 1


def test_below_threshold_no_compaction(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=1, compact_after=2)
    index.add(entries({"x": 10}), tag="w1")
    index.add(entries({"y": 11}), tag="w2")
    assert lookup(index, ["x", "y"]) == [10, 11]
    assert index.stats.compactions == 0
    assert len(segment_keys(store)) == 2


def test_fresh_instance_sees_the_same_state(tmp_path):
    store = LocalObjectStore(tmp_path)
    writer = HashIndex(store, PREFIX, buckets=8)
    writer.add(entries(A), tag="w1")
    writer.add(entries(B), tag="w2")
    reader = HashIndex(store, PREFIX, buckets=8)
    names = ["x", "y", "z", "w", "absent"]
    assert lookup(reader, names) == lookup(writer, names) == [7, 20, 5, 30, ABSENT]
    assert reader.stats.segments_read == len(segment_keys(store))


def test_corrupt_segment_raises_value_error_naming_the_key(tmp_path):
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store, PREFIX, buckets=1)
    index.add(entries({"x": 10}), tag="w1")
    bad = f"{PREFIX}/b1/0000/w-w2-deadbeef.seg"
    store.put(bad, b"not a segment")
    with pytest.raises(ValueError, match=f"index segment {bad} is corrupt"):
        HashIndex(store, PREFIX, buckets=1).lookup(np.array([h("x")], dtype="S32"))


def test_interleaved_writers_agree_on_the_minimum(tmp_path):
    store = LocalObjectStore(tmp_path)
    a = HashIndex(store, PREFIX, buckets=4, compact_after=2)
    b = HashIndex(store, PREFIX, buckets=4, compact_after=2)
    names = ["shared", "only2", "only1", "absent"]
    assert lookup(a, names) == [ABSENT] * 4  # A has read (and cached) the empty buckets
    a.add(entries({"shared": 20, "only2": 21}), tag="week2")
    assert lookup(b, names) == [20, 21, ABSENT, ABSENT]
    b.add(entries({"shared": 13, "only1": 14}), tag="week1")
    expected = [13, 21, 14, ABSENT]
    assert lookup(a, names) == expected
    assert lookup(b, names) == expected
    # Re-adding week2 later (a rerun) cannot raise the minimum back.
    a.add(entries({"shared": 20, "only2": 21}), tag="week2")
    assert lookup(HashIndex(store, PREFIX, buckets=4), names) == expected


class CompactsAfterListing:
    """A store whose first LIST of a bucket is followed, before any GET, by another process's compaction."""

    def __init__(self, inner: LocalObjectStore, compactor: HashIndex) -> None:
        self.inner = inner
        self.compactor = compactor
        self.fired = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def list(self, prefix: str, *, start_after: str = ""):
        yield from list(self.inner.list(prefix, start_after=start_after))
        if not self.fired:
            self.fired = True
            self.compactor.lookup(np.array([h("x")], dtype="S32"))


def test_reader_relists_when_a_listed_segment_was_compacted_away(tmp_path):
    store = LocalObjectStore(tmp_path)
    writer = HashIndex(store, PREFIX, buckets=1, compact_after=2)
    writer.add(entries({"x": 10}), tag="w1")
    writer.add(entries({"y": 11}), tag="w2")
    writer.add(entries({"x": 4, "z": 12}), tag="w3")
    compactor = HashIndex(store, PREFIX, buckets=1, compact_after=2)
    reader = HashIndex(CompactsAfterListing(store, compactor), PREFIX, buckets=1, compact_after=99)
    assert lookup(reader, ["x", "y", "z", "absent"]) == [4, 11, 12, ABSENT]
    assert compactor.stats.compactions == 1
    assert reader.stats.relists == 1
    assert len(segment_keys(store)) == 1


def test_segment_cache_is_bounded_however_large_the_index(tmp_path):
    import hashlib

    import numpy as np

    from pipelines.dedup.index import HashIndex
    from pipelines.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path)
    writer = HashIndex(store=store, prefix="index/x", buckets=8, compact_after=100)
    for week in range(6):
        hashes = [hashlib.sha256(f"{week}-{i}".encode()).digest() for i in range(2000)]
        writer.add(make_entries(hashes, [week] * len(hashes)), tag=f"w{week}")
    reader = HashIndex(store=store, prefix="index/x", buckets=8, compact_after=100, cache_bytes=50_000)
    probe = np.array([hashlib.sha256(f"5-{i}".encode()).digest() for i in range(2000)], dtype="S32")
    assert (reader.lookup(probe) == 5).all()
    # 12,000 entries of 36 bytes were read; at most the bound (plus the newest segment) stays cached.
    largest = max(a.nbytes for a in reader._cache.values())
    assert reader._cached <= 50_000 + largest
    assert reader.stats.segments_read == 6 * 8


def test_sorted_check_compares_whole_hashes_when_8_byte_prefixes_tie():
    from pipelines.dedup.index import _sorted_unique

    a, b, c = b"\x05" * 8 + b"\x01" * 24, b"\x05" * 8 + b"\x02" * 24, b"\x06" + b"\x00" * 31
    assert _sorted_unique(np.array([a, b, c], dtype="S32"))
    assert not _sorted_unique(np.array([b, a, c], dtype="S32"))  # prefixes tie, whole hashes go down
    assert not _sorted_unique(np.array([a, a, c], dtype="S32"))  # a repeated hash
    assert not _sorted_unique(np.array([c, a], dtype="S32"))     # the prefix goes down
    assert _sorted_unique(np.array([a], dtype="S32")) and _sorted_unique(np.empty(0, "S32"))


def test_an_unsorted_segment_file_is_still_looked_up_correctly(tmp_path):
    """Segments are written sorted; one that is not (another writer, a hand-made file) is sorted on read."""
    store = LocalObjectStore(tmp_path)
    index = HashIndex(store=store, prefix="index/legal", buckets=1)
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(50)]
    entries = np.empty(len(hashes) + 1, dtype=ENTRY)
    entries["h"] = hashes + [hashes[3]]
    entries["d"] = list(range(100, 150)) + [7]  # hashes[3] twice: the minimum day wins
    store.put("index/legal/b1/0000/w-hand-made.seg", encode_segment(entries[::-1]))
    got = HashIndex(store=store, prefix="index/legal", buckets=1).lookup(
        np.array(hashes + [hashlib.sha256(b"absent").digest()], dtype="S32"))
    expected = list(range(100, 150)) + [ABSENT]
    expected[3] = 7
    assert got.tolist() == expected
    assert index.lookup(np.array(hashes[:1], dtype="S32")).tolist() == [100]


def test_lookup_is_exact_when_8_byte_prefixes_tie(tmp_path):
    """The lookup searches 8-byte prefixes; hashes sharing one are still told apart."""
    index = HashIndex(store=LocalObjectStore(tmp_path), prefix="index/legal", buckets=1)
    same = [b"\x07" * 8 + bytes([i]) * 24 for i in (1, 3, 5, 7)]
    entries = np.empty(3, dtype=ENTRY)
    entries["h"], entries["d"] = same[:3], [30, 10, 20]
    index.add(entries, tag="w1")
    wanted = np.array([same[2], same[3], same[0], same[1], b"\x07" * 8 + b"\x02" * 24], dtype="S32")
    assert index.lookup(wanted).tolist() == [20, ABSENT, 30, 10, ABSENT]
