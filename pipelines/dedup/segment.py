"""Index segments: the stored formats, the in-memory forms and partial (ranged) reads.

Two formats, both a sorted array of 36-byte entries (SHA-256, first day), one entry per hash:

* ``DDXSEG1`` (v1): magic + entries. Written by the index before the two-level layout, and still the
  format of a week's staged signature set (``signatures.seg``). Read whole.
* ``DDXSEG2`` (v2): magic + a small *summary* + entries. The summary holds a fence per block of
  ``BLOCK`` entries (the block's first 8 hash bytes) and a Bloom filter of ``BLOOM_BITS`` bits per
  entry. A lookup reads the summary (a ranged GET of the first bytes), tests the wanted hashes
  against the filter, and reads only the blocks whose fences can hold a hash that passed: bytes read
  scale with the batch (and its duplicates), not with the segment. The summary is ~4 % of the entries.

Both are immutable (written create-only under a name derived from their bytes), so any part read once
can be cached by key.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipelines.storage import ObjectStore, get_range

ENTRY = np.dtype([("h", "S32"), ("d", "<i4")])
MAGIC = b"DDXSEG1\n"
MAGIC2 = b"DDXSEG2\n"
ABSENT = np.iinfo(np.int32).max
BLOCK = 32            # entries per block (1.1 KB): the unit of a partial read
BLOOM_BITS = 16       # filter bits per entry: ~0.05 % false positives with BLOOM_K probes
BLOOM_K = 11
_HEAD = struct.Struct("<QIII")  # entries, entries per block, blocks, filter words (uint64)


def encode_segment(entries: np.ndarray) -> bytes:
    """Serialize entries (sorted by hash, one per hash) to the v1 format (staged signature sets)."""
    return MAGIC + np.ascontiguousarray(entries, dtype=ENTRY).tobytes()


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


def _prefixes(hashes: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each ``S32`` hash as a native ``uint64``: same order as the hashes."""
    return np.ascontiguousarray(hashes).view(">u8").reshape(-1, 4)[:, 0].astype(np.uint64)


def _bloom_positions(hashes: np.ndarray, bits: int) -> np.ndarray:
    """``BLOOM_K`` bit positions per hash (rows), by double hashing on digest bytes 8..24, which are
    independent of the bucket (bytes 0..4) and of the fences (bytes 0..8)."""
    words = np.ascontiguousarray(hashes).view("<u8").reshape(-1, 4)
    h1, h2 = words[:, 1], words[:, 2] | np.uint64(1)
    probes = np.arange(BLOOM_K, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (h1[:, None] + probes[None, :] * h2[:, None]) % np.uint64(bits)


def encode_indexed_segment(entries: np.ndarray) -> bytes:
    """Serialize entries (sorted by hash, one per hash) to the v2 format (summary + entries)."""
    entries = np.ascontiguousarray(entries, dtype=ENTRY)
    count = len(entries)
    fences = _prefixes(entries["h"][::BLOCK]) if count else np.empty(0, np.uint64)
    words = max(1, -(-count * BLOOM_BITS // 64))
    bloom = np.zeros(words, np.uint64)
    if count:
        pos = _bloom_positions(entries["h"], words * 64).ravel()
        np.bitwise_or.at(bloom, (pos >> np.uint64(6)).astype(np.int64), np.uint64(1) << (pos & np.uint64(63)))
    head = _HEAD.pack(count, BLOCK, len(fences), words)
    return b"".join((MAGIC2, head, fences.astype("<u8").tobytes(), bloom.astype("<u8").tobytes(), entries.tobytes()))


@dataclass(frozen=True)
class Summary:
    """The summary of a v2 segment: where its entries start, a fence per block and the Bloom filter."""

    count: int
    block: int
    fences: np.ndarray
    bloom: np.ndarray
    data_offset: int

    @property
    def nbytes(self) -> int:
        return self.fences.nbytes + self.bloom.nbytes

    def header_bytes(self) -> int:
        return self.data_offset

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Whether each hash may be in the segment (no false negatives)."""
        if not self.count or not len(hashes):
            return np.zeros(len(hashes), bool)
        pos = _bloom_positions(hashes, len(self.bloom) * 64)
        bits = (self.bloom[(pos >> np.uint64(6)).astype(np.int64)] >> (pos & np.uint64(63))) & np.uint64(1)
        return bits.all(axis=1)

    def blocks(self, prefixes: np.ndarray) -> np.ndarray:
        """The sorted blocks that can hold hashes with these 8-byte prefixes. A run of equal prefixes
        may straddle a block boundary, so a prefix equal to a fence also takes the block before."""
        lo = np.maximum(np.searchsorted(self.fences, prefixes, side="left") - 1, 0)
        hi = np.maximum(np.searchsorted(self.fences, prefixes, side="right") - 1, 0)
        if (lo == hi).all():
            return np.unique(lo)
        return np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(lo.tolist(), hi.tolist())]))


def _summary_bytes(count: int) -> int:
    return len(MAGIC2) + _HEAD.size + 8 * -(-count // BLOCK) + 8 * max(1, -(-count * BLOOM_BITS // 64))


def expected_summary_size(size: int) -> int:
    """Bytes before the entries of a v2 segment of ``size`` bytes written with this module's constants:
    what the first ranged read fetches (a segment written with other constants takes a second read)."""
    lo, hi = 0, max(0, size // ENTRY.itemsize)
    while lo < hi:  # the largest count whose segment fits in size bytes
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _summary_bytes(mid) + mid * ENTRY.itemsize <= size else (lo, mid - 1)
    return min(size, _summary_bytes(lo))


def summary_size(head: bytes, key: str = "") -> int:
    """Bytes of a v2 segment before its entries, from its first ``len(MAGIC2) + _HEAD.size`` bytes."""
    if len(head) < len(MAGIC2) + _HEAD.size or not head.startswith(MAGIC2):
        raise ValueError(f"index segment {key or '?'} is corrupt (bad magic or length)")
    _count, _block, nfences, words = _HEAD.unpack_from(head, len(MAGIC2))
    return len(MAGIC2) + _HEAD.size + 8 * nfences + 8 * words


def decode_summary(data: bytes, key: str = "") -> Summary:
    """The summary of a v2 segment from (at least) its first ``summary_size`` bytes."""
    size = summary_size(data, key)
    if len(data) < size:
        raise ValueError(f"index segment {key or '?'} is corrupt (summary cut short)")
    count, block, nfences, words = _HEAD.unpack_from(data, len(MAGIC2))
    at = len(MAGIC2) + _HEAD.size
    fences = np.frombuffer(data, "<u8", nfences, at).astype(np.uint64)
    bloom = np.frombuffer(data, "<u8", words, at + 8 * nfences).astype(np.uint64)
    if block < 1 or nfences != -(-count // block):
        raise ValueError(f"index segment {key or '?'} is corrupt (summary does not match its entries)")
    return Summary(count=count, block=block, fences=fences, bloom=bloom, data_offset=size)


def decode_segment(data: bytes, key: str = "") -> np.ndarray:
    """The entries of a segment in either format."""
    if data.startswith(MAGIC2):
        summary = decode_summary(data, key)
        if len(data) != summary.data_offset + summary.count * ENTRY.itemsize:
            raise ValueError(f"index segment {key or '?'} is corrupt (bad magic or length)")
        return np.frombuffer(data, dtype=ENTRY, offset=summary.data_offset)
    if not data.startswith(MAGIC) or (len(data) - len(MAGIC)) % ENTRY.itemsize:
        raise ValueError(f"index segment {key or '?'} is corrupt (bad magic or length)")
    return np.frombuffer(data, dtype=ENTRY, offset=len(MAGIC))


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


@dataclass(frozen=True)
class Segment:
    """Entries in memory: hashes (``S32``, strictly increasing), their 8-byte prefixes as integers
    (searched instead of the strings) and days, as contiguous columns. A whole segment, or the
    blocks of one that a lookup read."""

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


def read_range(store: ObjectStore, key: str, start: int, end: int) -> bytes | None:
    """Bytes ``[start, end)`` of an object, or None where the store cannot read a range
    (``pipelines.storage.get_range``)."""
    return get_range(store, key, start, end)


def coalesce(blocks: np.ndarray, max_reads: int) -> list[tuple[int, int]]:
    """Runs ``[first, last]`` of consecutive blocks, at most ``max_reads`` of them: the smallest gaps
    are read through (a few wasted bytes instead of a request each)."""
    if not len(blocks):
        return []
    breaks = np.flatnonzero(np.diff(blocks) > 1)
    if len(breaks) >= max_reads:
        gaps = np.diff(blocks)[breaks]
        keep = np.sort(breaks[np.argsort(gaps, kind="stable")[len(breaks) - (max_reads - 1):]])
        breaks = keep
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(blocks) - 1]])
    return [(int(blocks[a]), int(blocks[b])) for a, b in zip(starts, ends)]
