"""The persistent exact-dedup index: every content hash ever ingested, with its earliest arrival day.

Layout (per domain)::

    index/<domain>/b<B>/<bucket:04x>/w-<interval start>-<digest>.seg   one week's signature set
    index/<domain>/b<B>/<bucket:04x>/c-<digest>.seg                    a compaction of several

A hash lives in bucket ``int(hash[:4]) % B``. A segment is a sorted array of (sha256, day) entries;
its name is derived from its bytes, and it is written create-only (``IfNoneMatch``), so it is immutable.
The index state is the union of all segments, reduced by taking the minimum day per hash. That
reduction is commutative, associative and idempotent, which is what makes the index safe without
If-Match: concurrent writers only add segments; a compaction writes the merge of the segments it
read and only then deletes exactly those; a reader that finds a listed segment gone lists again.
No update can be lost and any interleaving reaches the same state.

Cost of a lookup: for every bucket the batch touches, at most ``compact_after + 1`` GETs (segments
are immutable, so a process caches them by key), and one LIST per bucket, or, when it touches more
than ``LIST_ALL_FROM`` buckets, one listing of the whole layout (at most ``buckets * (compact_after + 1)``
keys: a few pages). That is independent of the index size; bytes read are the touched buckets' share
of the index. See docs/DEDUP.md, "Dedup index".
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from pipelines.storage import NotFound, ObjectStore

ENTRY = np.dtype([("h", "S32"), ("d", "<i4")])
MAGIC = b"DDXSEG1\n"
ABSENT = np.iinfo(np.int32).max
LIST_ALL_FROM = 8  # a lookup touching more buckets than this lists the whole layout once


def encode_segment(entries: np.ndarray) -> bytes:
    """Serialize entries (sorted by hash, one per hash) to the segment format."""
    return MAGIC + np.ascontiguousarray(entries, dtype=ENTRY).tobytes()


def decode_segment(data: bytes, key: str = "") -> np.ndarray:
    if not data.startswith(MAGIC) or (len(data) - len(MAGIC)) % ENTRY.itemsize:
        raise ValueError(f"index segment {key or '?'} is corrupt (bad magic or length)")
    return np.frombuffer(data, dtype=ENTRY, offset=len(MAGIC))


def merge_min(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Union of entry arrays keeping the minimum day per hash, sorted by hash."""
    parts = [a for a in arrays if len(a)]
    if not parts:
        return np.empty(0, dtype=ENTRY)
    merged = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
    merged.sort(order=("h", "d"), kind="stable")
    first = np.ones(len(merged), dtype=bool)
    first[1:] = merged["h"][1:] != merged["h"][:-1]
    return merged[first]


def _sorted_unique(hashes: np.ndarray) -> bool:
    """Whether ``S32`` hashes are strictly increasing; compares 8-byte prefixes as integers first."""
    if len(hashes) < 2:
        return True
    hashes = np.ascontiguousarray(hashes)
    first = hashes.view(">u8").reshape(-1, 4)[:, 0]
    up = first[1:] > first[:-1]
    if up.all():
        return True
    tie = np.flatnonzero(first[1:] == first[:-1])
    if len(tie) != len(up) - int(up.sum()):  # some prefix goes down
        return False
    return bool((hashes[tie + 1] > hashes[tie]).all())


def _prefixes(hashes: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each ``S32`` hash as a native ``uint64``: same order as the hashes."""
    return np.ascontiguousarray(hashes).view(">u8").reshape(-1, 4)[:, 0].astype(np.uint64)


@dataclass(frozen=True)
class Segment:
    """A segment in memory: hashes (``S32``, strictly increasing), their 8-byte prefixes as integers
    (searched instead of the strings) and days, as contiguous columns."""

    h: np.ndarray
    d: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, entries: np.ndarray) -> Segment:
        h, d = np.ascontiguousarray(entries["h"]), np.ascontiguousarray(entries["d"])
        if not _sorted_unique(h):  # written by merge_min, so sorted; but never trust a file
            entries = merge_min([entries])
            h, d = np.ascontiguousarray(entries["h"]), np.ascontiguousarray(entries["d"])
        return cls(h, d, _prefixes(h))

    @property
    def nbytes(self) -> int:
        return self.h.nbytes + self.d.nbytes + self.key.nbytes

    def days(self, wanted: np.ndarray, wanted_key: np.ndarray) -> np.ndarray:
        """The day of each wanted hash in this segment, ``ABSENT`` where it is not."""
        size = len(self.h)
        if not size:
            return np.full(len(wanted), ABSENT, np.int32)
        pos = np.minimum(np.searchsorted(self.key, wanted_key), size - 1)
        hit = self.h[pos] == wanted
        # Equal prefixes, different hashes (never seen with SHA-256, but possible): the match may sit
        # later in the run of equal prefixes, so those few are searched by the whole hash.
        tie = np.flatnonzero(~hit & (self.key[pos] == wanted_key))
        if len(tie):
            exact = np.minimum(np.searchsorted(self.h, wanted[tie]), size - 1)
            pos[tie] = exact
            hit[tie] = self.h[exact] == wanted[tie]
        return np.where(hit, self.d[pos], ABSENT)

    def entries(self) -> np.ndarray:
        out = np.empty(len(self.h), dtype=ENTRY)
        out["h"], out["d"] = self.h, self.d
        return out


def bucket_numbers(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each hash (first 4 bytes, big-endian, modulo the bucket count)."""
    prefix = np.frombuffer(hashes.astype("S32").tobytes(), dtype=">u4").reshape(-1, 8)[:, 0] if len(hashes) else np.empty(0, ">u4")
    return (prefix.astype(np.uint64) % buckets).astype(np.int64)


@dataclass
class IndexStats:
    """What a lookup or add touched (for the manifest and the request-count test)."""

    buckets_touched: int = 0
    segments_read: int = 0
    segments_written: int = 0
    compactions: int = 0
    relists: int = 0


@dataclass
class HashIndex:
    """A per-domain dedup index in an object store.

    Args:
        store: the object store.
        prefix: e.g. ``index/legal``.
        buckets: hash buckets (fixed for an index; the layout key includes it).
        compact_after: compact a bucket when it holds more segments than this.
    """

    store: ObjectStore
    prefix: str
    buckets: int = 256
    compact_after: int = 8
    cache_bytes: int = 16 * 1024 * 1024
    stats: IndexStats = field(default_factory=IndexStats)
    _cache: OrderedDict[str, Segment] = field(default_factory=OrderedDict, repr=False)
    _cached: int = field(default=0, repr=False)
    _used: dict[str, int] = field(default_factory=dict, repr=False)  # key -> lookup (epoch) that last used it
    _epoch: int = field(default=0, repr=False)

    def _touch(self, key: str) -> Segment:
        self._cache.move_to_end(key)
        self._used[key] = self._epoch
        return self._cache[key]

    def _remember(self, key: str, segment: Segment) -> None:
        """Cache an immutable segment, so memory stays bounded by ``cache_bytes`` plus one bucket however
        large the index grows.

        Least recently used out first, but never a segment this lookup already used: a lookup walks
        every bucket in the same order, and plain LRU over such a cycle evicts each segment just before
        it is needed again (no hits at all once the index outgrows the cache). Keeping what fits and
        not admitting the rest gives a hit rate of about cache/index instead.
        """
        if key in self._cache:
            self._touch(key)
            return
        self._cache[key] = segment
        self._used[key] = self._epoch
        self._cached += segment.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            oldest = next(iter(self._cache))
            victim = oldest if self._used[oldest] < self._epoch else key  # all in use: do not admit this one
            self._cached -= self._cache.pop(victim).nbytes
            del self._used[victim]
            if victim == key:
                break

    def _bucket_prefix(self, bucket: int) -> str:
        return f"{self.prefix}/b{self.buckets}/{bucket:04x}/"

    def _list_buckets(self) -> dict[int, list[str]]:
        """Segment keys of every bucket, from one listing of the layout (a few pages of at most
        ``buckets * (compact_after + 1)`` keys, instead of one LIST per bucket)."""
        base = f"{self.prefix}/b{self.buckets}/"
        found: dict[int, list[str]] = {}
        for info in self.store.list(base):
            folder, _, name = info.key[len(base):].partition("/")
            if name.endswith(".seg") and "/" not in name:
                found.setdefault(int(folder, 16), []).append(info.key)
        return found

    def _read_segments(self, bucket: int, listed: list[str] | None = None) -> tuple[list[Segment], list[str]]:
        """The bucket's segments and their keys; ``listed`` are its keys from ``_list_buckets``."""
        for _attempt in range(5):
            if listed is not None:
                keys, listed = listed, None  # a listed segment gone: list this bucket again below
            else:
                keys = [o.key for o in self.store.list(self._bucket_prefix(bucket)) if o.key.endswith(".seg")]
            try:
                arrays = []
                for key in keys:
                    if key in self._cache:
                        arrays.append(self._touch(key))
                        continue
                    segment = Segment.of(decode_segment(self.store.get(key), key))
                    self.stats.segments_read += 1
                    arrays.append(segment)
                    self._remember(key, segment)
            except NotFound:
                self.stats.relists += 1  # compacted away under us: its content is in a new segment
                continue
            return arrays, keys
        raise RuntimeError(f"index bucket {self._bucket_prefix(bucket)} kept changing while being read; retry the task")

    def _compact(self, bucket: int, merged: np.ndarray, keys: list[str]) -> Segment:
        data = encode_segment(merged)
        key = f"{self._bucket_prefix(bucket)}c-{hashlib.sha256(data).hexdigest()[:24]}.seg"
        self.store.put(key, data, if_none_match=True)
        segment = Segment.of(merged)
        self._remember(key, segment)
        for old in keys:
            if old != key:
                self.store.delete(old)
        self.stats.compactions += 1
        return segment

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Earliest known arrival day (days since epoch) of each hash, ``ABSENT`` if never seen."""
        hashes = np.asarray(hashes, dtype="S32")
        result = np.full(len(hashes), ABSENT, dtype=np.int32)
        if not len(hashes):
            return result
        self._epoch += 1
        buckets = bucket_numbers(hashes, self.buckets)
        order = np.argsort(buckets, kind="stable")
        touched, starts = np.unique(buckets[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        # Many buckets: one listing of the whole layout; a few: one LIST each.
        listing = self._list_buckets() if len(touched) > LIST_ALL_FROM else None
        for bucket, lo, hi in zip(touched.tolist(), starts.tolist(), ends.tolist()):
            self.stats.buckets_touched += 1
            where = order[lo:hi]
            segments, keys = self._read_segments(bucket, None if listing is None else listing.get(bucket, []))
            if len(keys) > self.compact_after:
                segments = [self._compact(bucket, merge_min([s.entries() for s in segments]), keys)]
            wanted = hashes[where]
            wanted_key = _prefixes(wanted)
            best = result[where]
            # Each segment is sorted: a binary search per segment, the minimum day over segments. No
            # merge (a sort of the whole bucket) per lookup.
            for segment in segments:
                np.minimum(best, segment.days(wanted, wanted_key), out=best)
            result[where] = best
        return result

    def add(self, entries: np.ndarray, *, tag: str) -> list[str]:
        """Add a week's signature set (one entry per hash, its first day in that week).

        Writes one create-only segment per touched bucket; re-adding the same entries writes
        nothing new (same bytes, same key). Returns the segment keys.
        """
        entries = merge_min([np.asarray(entries, dtype=ENTRY)])
        keys = []
        buckets = bucket_numbers(entries["h"], self.buckets)
        for bucket in np.unique(buckets).tolist():
            part = entries[buckets == bucket]
            data = encode_segment(part)
            key = f"{self._bucket_prefix(bucket)}w-{tag}-{hashlib.sha256(data).hexdigest()[:24]}.seg"
            if self.store.put(key, data, if_none_match=True):
                self.stats.segments_written += 1
            self._remember(key, Segment.of(part))
            keys.append(key)
        return keys
