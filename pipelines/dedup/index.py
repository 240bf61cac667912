"""The persistent exact-dedup index: every content hash ever ingested, with its earliest arrival day.

Layout (per domain)::

    index/<domain>/b<B>/<folder>/w-<interval start>-<digest>.seg   one week's signatures in this folder
    index/<domain>/b<B>/<folder>/c-<digest>.seg                    a compaction of several

A hash lives in bucket ``int(hash[:4]) % B`` and a bucket in folder ``bucket * F // B`` with
``F = min(B, MAX_FOLDERS)`` folders, named ``<bucket:04x>`` while ``B <= MAX_FOLDERS`` (one bucket per
folder) and ``g<folder:04x>`` above (a contiguous range of buckets per folder). So a week writes at
most ``MAX_FOLDERS`` objects however large ``B`` is: ``B`` is the unit of sharded decisions
(``pipelines.dedup.shard``), the folder is the unit of storage.

A segment is a sorted array of (sha256, day) entries with a summary (a fence per block and a Bloom
filter, ``pipelines.dedup.segment``); its name is derived from its bytes and it is written create-only
(``IfNoneMatch``), so it is immutable. The index state is the union of all segments, reduced by taking
the minimum day per hash. That reduction is commutative, associative and idempotent, which is what
makes the index safe without If-Match: concurrent writers only add segments; a compaction writes the
merge of the segments it read and only then deletes exactly those; a reader that finds a listed
segment gone lists again. No update can be lost and any interleaving reaches the same state.

Cost of a lookup, for every folder the batch touches: one ranged GET of each segment's summary (a few
KB; a segment under ``SMALL_SEGMENT`` bytes is read whole in that GET) and ranged GETs of only the
blocks that can hold a hash that passed the filter (the batch's duplicates plus ~1 % per segment).
Compaction is size-tiered: it merges the smallest segments of a folder, never a large one with a
small one, so each entry is rewritten O(log(index / week)) times instead of once per
``compact_after`` weeks. Segments written before this layout (v1, no summary; per-bucket folders at
``B > MAX_FOLDERS``) are still read, whole, and folded in by the next compaction. See docs/DEDUP.md.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from pipelines.dedup.segment import (  # noqa: F401  (re-exported: the index's public names)
    ABSENT, ENTRY, MAGIC, MAGIC2, Segment, Summary, _prefixes, _sorted_unique, coalesce,
    decode_segment, decode_summary, encode_indexed_segment, encode_segment, expected_summary_size, merge_min, read_range, summary_size,
)
from pipelines.storage import NotFound, ObjectStore

LIST_ALL_FROM = 8        # a lookup touching more folders than this lists the whole layout once
MAX_FOLDERS = 256        # objects a week writes, at most, whatever ``buckets`` is
SMALL_SEGMENT = 8192     # a segment this small is read whole in its first GET
MAX_READS = 16           # ranged GETs of blocks per segment and lookup, at most (gaps are read through)


def bucket_numbers(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each hash (first 4 bytes, big-endian, modulo the bucket count)."""
    prefix = np.frombuffer(hashes.astype("S32").tobytes(), dtype=">u4").reshape(-1, 8)[:, 0] if len(hashes) else np.empty(0, ">u4")
    return (prefix.astype(np.uint64) % buckets).astype(np.int64)


def plan_compaction(sizes: list[int], compact_after: int) -> list[int]:
    """Which segments of a folder to merge (indices into ``sizes``), or none.

    Size-tiered: when a folder holds more than ``compact_after`` segments, merge the smallest ones, as
    many as needed to get back to ``compact_after``, and then every next-smallest one that is no larger
    than what is being merged. A merge thus at least doubles what it rewrites, so an entry is rewritten
    O(log(index / week)) times, and the large old segments are left alone.
    """
    n = len(sizes)
    if n <= compact_after:
        return []
    order = sorted(range(n), key=lambda i: sizes[i])
    take = max(2, n - compact_after + 1)
    total = sum(sizes[i] for i in order[:take])
    while take < n and total >= sizes[order[take]]:
        total += sizes[order[take]]
        take += 1
    return sorted(order[:take])


@dataclass
class IndexStats:
    """What a lookup or add touched (for the manifest, the request-count test and the benchmark)."""

    buckets_touched: int = 0
    segments_read: int = 0      # segments consulted (at least their summary read)
    segments_written: int = 0
    compactions: int = 0
    relists: int = 0
    gets: int = 0               # GET requests, whole or ranged
    bytes_read: int = 0
    bytes_written: int = 0
    entries_rewritten: int = 0  # by compactions


@dataclass
class _Listed:
    key: str
    size: int


@dataclass
class HashIndex:
    """A per-domain dedup index in an object store.

    Args:
        store: the object store.
        prefix: e.g. ``index/legal``.
        buckets: hash buckets (fixed for an index; the layout key includes it).
        compact_after: compact a folder when it holds more segments than this.
        cache_bytes: immutable segments, summaries and blocks kept in memory across lookups.
    """

    store: ObjectStore
    prefix: str
    buckets: int = 256
    compact_after: int = 8
    cache_bytes: int = 16 * 1024 * 1024
    stats: IndexStats = field(default_factory=IndexStats)
    _cache: OrderedDict[str, Segment | Summary] = field(default_factory=OrderedDict, repr=False)
    _cached: int = field(default=0, repr=False)
    _used: dict[str, int] = field(default_factory=dict, repr=False)  # key -> lookup (epoch) that last used it
    _epoch: int = field(default=0, repr=False)

    @property
    def folders(self) -> int:
        return min(self.buckets, MAX_FOLDERS)

    def folder_of(self, buckets: np.ndarray) -> np.ndarray:
        return (np.asarray(buckets, np.int64) * self.folders) // self.buckets

    # ------------------------------------------------------------------------------- cache
    def _touch(self, key: str) -> Segment | Summary:
        self._cache.move_to_end(key)
        self._used[key] = self._epoch
        return self._cache[key]

    def _remember(self, key: str, item: Segment | Summary) -> None:
        """Cache an immutable segment (or summary), so memory stays bounded by ``cache_bytes`` plus one
        folder however large the index grows.

        Least recently used out first, but never an item this lookup already used: a lookup walks
        every folder in the same order, and plain LRU over such a cycle evicts each item just before
        it is needed again (no hits at all once the index outgrows the cache). Keeping what fits and
        not admitting the rest gives a hit rate of about cache/index instead.
        """
        if key in self._cache:
            self._touch(key)
            return
        self._cache[key] = item
        self._used[key] = self._epoch
        self._cached += item.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            oldest = next(iter(self._cache))
            victim = oldest if self._used[oldest] < self._epoch else key  # all in use: do not admit this one
            self._cached -= self._cache.pop(victim).nbytes
            del self._used[victim]
            if victim == key:
                break

    def _evict(self, key: str) -> None:
        item = self._cache.pop(key, None)
        if item is not None:
            self._cached -= item.nbytes
            del self._used[key]

    def _forget(self) -> None:
        self._cache.clear()
        self._used.clear()
        self._cached = 0

    # ------------------------------------------------------------------------------- layout
    def _folder_prefix(self, folder: int) -> str:
        name = f"{folder:04x}" if self.folders == self.buckets else f"g{folder:04x}"
        return f"{self.prefix}/b{self.buckets}/{name}/"

    def _legacy_prefix(self, bucket: int) -> str:
        """A bucket's folder in the layout before folders (one per bucket, also at ``B > MAX_FOLDERS``)."""
        return f"{self.prefix}/b{self.buckets}/{bucket:04x}/"

    def _bucket_prefix(self, bucket: int) -> str:
        """The folder holding ``bucket`` (kept for callers that think in buckets)."""
        return self._folder_prefix(int(self.folder_of(np.array([bucket]))[0]))

    def _parse_folder(self, name: str) -> int | None:
        if name.startswith("g") and self.folders < self.buckets:
            return int(name[1:], 16)
        try:
            bucket = int(name, 16)  # one bucket per folder: this layout, or a legacy one at B > MAX_FOLDERS
        except ValueError:
            return None
        return bucket if self.folders == self.buckets else int(self.folder_of(np.array([bucket]))[0])

    def _list_folders(self) -> dict[int, list[_Listed]]:
        """Segments of every folder, from one listing of the layout (a few pages of at most
        ``folders * (compact_after + 1)`` keys, instead of one LIST per folder)."""
        base = f"{self.prefix}/b{self.buckets}/"
        found: dict[int, list[_Listed]] = {}
        for info in self.store.list(base):
            folder, _, name = info.key[len(base):].partition("/")
            number = self._parse_folder(folder)
            if name.endswith(".seg") and "/" not in name and number is not None:
                found.setdefault(number, []).append(_Listed(info.key, info.size))
        return found

    def _list_folder(self, folder: int) -> list[_Listed]:
        if self.folders < self.buckets:  # per-bucket folders of the earlier layout may hold some of it
            return self._list_folders().get(folder, [])
        return [_Listed(o.key, o.size) for o in self.store.list(self._folder_prefix(folder)) if o.key.endswith(".seg")]

    # ------------------------------------------------------------------------------- reads
    def _get(self, key: str) -> bytes:
        data = self.store.get(key)
        self.stats.gets += 1
        self.stats.bytes_read += len(data)
        return data

    def _get_range(self, key: str, start: int, end: int) -> bytes | None:
        data = read_range(self.store, key, start, end)
        if data is not None:
            self.stats.gets += 1
            self.stats.bytes_read += len(data)
        return data

    def _open(self, listed: _Listed) -> Segment | Summary:
        """A segment whole (small, v1, or a store without ranged reads), or the summary of a v2 one."""
        key = listed.key
        if key in self._cache:
            return self._touch(key)
        head = None
        if listed.size > SMALL_SEGMENT:
            head = self._get_range(key, 0, expected_summary_size(listed.size))
        if head is None or not head.startswith(MAGIC2):
            item: Segment | Summary = Segment.of(decode_segment(self._get(key), key))
        else:
            need = summary_size(head, key)
            if need > len(head):
                head += self._get_range(key, len(head), need) or b""
            item = decode_summary(head, key)
            if need + item.count * ENTRY.itemsize != listed.size:
                raise ValueError(f"index segment {key} is corrupt (bad magic or length)")
        self.stats.segments_read += 1
        self._remember(key, item)
        return item

    def _days_in(self, key: str, summary: Summary, wanted: np.ndarray, wanted_key: np.ndarray) -> np.ndarray:
        """Look wanted hashes up in a v2 segment of which only the summary is in memory."""
        result = np.full(len(wanted), ABSENT, np.int32)
        maybe = np.flatnonzero(summary.maybe(wanted))
        if not len(maybe):
            return result
        blocks = summary.blocks(wanted_key[maybe])
        parts = []
        for first, last in coalesce(blocks, MAX_READS):
            start = summary.data_offset + first * summary.block * ENTRY.itemsize
            end = summary.data_offset + min((last + 1) * summary.block, summary.count) * ENTRY.itemsize
            block_key = f"{key}#{first}-{last}"
            if block_key in self._cache:
                parts.append(self._touch(block_key))
                continue
            data = self._get_range(key, start, end)
            if data is None or len(data) != end - start:
                raise ValueError(f"index segment {key} is corrupt (entries cut short)")
            part = Segment.of(np.frombuffer(data, dtype=ENTRY))
            self._remember(block_key, part)
            parts.append(part)
        found = parts[0] if len(parts) == 1 else Segment.of(np.concatenate([p.entries() for p in parts]))
        result[maybe] = found.days(wanted[maybe], wanted_key[maybe])
        return result

    def _read_folder(self, folder: int, listed: list[_Listed] | None = None) -> tuple[list[tuple[str, Segment | Summary]], list[_Listed]]:
        """The folder's segments (compacted first if it holds too many) and their listing;
        ``listed`` is its listing from ``_list_folders``."""
        for _attempt in range(5):
            if listed is not None:
                current, listed = listed, None  # a listed segment gone: list this folder again below
            else:
                current = self._list_folder(folder)
            try:
                merge = set(plan_compaction([x.size for x in current], self.compact_after))
                if self.folders < self.buckets:  # segments in per-bucket folders of the earlier layout: fold them in
                    mine = self._folder_prefix(folder)
                    merge |= {i for i, x in enumerate(current) if not x.key.startswith(mine)}
                opened = []
                merged_parts = []
                for i, item in enumerate(current):
                    if i in merge:
                        cached = self._cache.get(item.key)
                        whole = cached if isinstance(cached, Segment) else Segment.of(decode_segment(self._get(item.key), item.key))
                        if cached is None:
                            self.stats.segments_read += 1
                        merged_parts.append(whole)
                    else:
                        opened.append((item.key, self._open(item)))
            except NotFound:
                self.stats.relists += 1  # compacted away under us: its content is in a new segment
                continue
            if merge:
                opened.append(self._compact(folder, merged_parts, [current[i].key for i in sorted(merge)]))
            return opened, current
        raise RuntimeError(f"index folder {self._folder_prefix(folder)} kept changing while being read; retry the task")

    def _compact(self, folder: int, parts: list[Segment], keys: list[str]) -> tuple[str, Segment]:
        merged = merge_min([s.entries() for s in parts])
        data = encode_indexed_segment(merged)
        key = f"{self._folder_prefix(folder)}c-{hashlib.sha256(data).hexdigest()[:24]}.seg"
        if self.store.put(key, data, if_none_match=True):
            self.stats.bytes_written += len(data)
            self.stats.entries_rewritten += len(merged)
        segment = Segment.of(merged)
        self._remember(key, segment)
        for old in keys:
            if old != key:
                self.store.delete(old)
                self._evict(old)
        self.stats.compactions += 1
        return key, segment

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Earliest known arrival day (days since epoch) of each hash, ``ABSENT`` if never seen."""
        hashes = np.asarray(hashes, dtype="S32")
        result = np.full(len(hashes), ABSENT, dtype=np.int32)
        if not len(hashes):
            return result
        self._epoch += 1
        buckets = bucket_numbers(hashes, self.buckets)
        self.stats.buckets_touched += len(np.unique(buckets))
        folders = self.folder_of(buckets)
        order = np.argsort(folders, kind="stable")
        touched, starts = np.unique(folders[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        # Many folders (or a layout that may still hold per-bucket folders): one listing of the whole
        # layout; a few: one LIST each.
        whole = len(touched) > LIST_ALL_FROM or self.folders < self.buckets
        listing = self._list_folders() if whole else None
        for folder, lo, hi in zip(touched.tolist(), starts.tolist(), ends.tolist()):
            where = order[lo:hi]
            segments, _ = self._read_folder(folder, None if listing is None else listing.get(folder, []))
            wanted = hashes[where]
            wanted_key = _prefixes(wanted)
            best = result[where]
            # Each segment is sorted: a binary search per segment (or per block read), the minimum
            # day over segments. No merge (a sort of the whole folder) per lookup.
            for key, item in segments:
                days = (item.days(wanted, wanted_key) if isinstance(item, Segment)
                        else self._days_in(key, item, wanted, wanted_key))
                np.minimum(best, days, out=best)
            result[where] = best
        return result

    # ------------------------------------------------------------------------------- writes
    def add(self, entries: np.ndarray, *, tag: str) -> list[str]:
        """Add a week's signature set (one entry per hash, its first day in that week).

        Writes one create-only segment per touched folder (at most ``MAX_FOLDERS``); re-adding the
        same entries writes nothing new (same bytes, same key). Returns the segment keys.
        """
        entries = merge_min([np.asarray(entries, dtype=ENTRY)])
        keys = []
        folders = self.folder_of(bucket_numbers(entries["h"], self.buckets))
        for folder in np.unique(folders).tolist():
            part = entries[folders == folder]
            data = encode_indexed_segment(part)
            key = f"{self._folder_prefix(folder)}w-{tag}-{hashlib.sha256(data).hexdigest()[:24]}.seg"
            if self.store.put(key, data, if_none_match=True):
                self.stats.segments_written += 1
                self.stats.bytes_written += len(data)
            self._remember(key, Segment.of(part))
            keys.append(key)
        return keys
