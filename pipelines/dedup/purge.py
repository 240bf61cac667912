"""Removing hashes from the dedup index (erasure requests).

Segments are immutable, so a hash is removed by writing each segment that holds it again without it
(create-only, under the name its new bytes give, the same ``w-<tag>-`` or ``c-`` kind) and then
deleting the old segment, the same write-then-delete order compaction uses. A compaction running at
the same moment could merge the old segment before it is deleted and so bring the hash back: the
bucket is read again afterwards and the removal repeated until the hash is absent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from pipelines.dedup.index import ABSENT, HashIndex, bucket_numbers, decode_segment, encode_indexed_segment
from pipelines.storage import NotFound

_DIGEST_CHARS = 24


def _new_name(old_name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]
    stem = old_name[:-len(".seg")]
    if stem.startswith("w-") and len(stem) > 2 + _DIGEST_CHARS + 1:
        return f"{stem[:-(_DIGEST_CHARS + 1)]}-{digest}.seg"  # keep w-<tag>
    return f"c-{digest}.seg"


def remove_hashes(index: HashIndex, hashes: Iterable[bytes], *, attempts: int = 5) -> int:
    """Remove content hashes (32 raw bytes each) from every segment of ``index``; return entries removed.

    Raises:
        RuntimeError: a hash was still present after ``attempts`` rounds (concurrent compactions).
    """
    wanted = np.array(sorted(set(hashes)), dtype="S32")
    if not len(wanted):
        return 0
    removed = 0
    folders = index.folder_of(bucket_numbers(wanted, index.buckets))
    legacy = index.folders < index.buckets  # per-bucket folders of the layout before folders may remain
    for number in np.unique(folders).tolist():
        mine = wanted[folders == number]
        prefixes = [index._folder_prefix(number)]
        if legacy:
            prefixes += sorted({index._legacy_prefix(b) for b in bucket_numbers(mine, index.buckets).tolist()})
        for _attempt in range(attempts):
            for info in [i for p in prefixes for i in index.store.list(p)]:
                folder = info.key.rsplit("/", 1)[0] + "/"
                if not info.key.endswith(".seg"):
                    continue
                try:
                    entries = decode_segment(index.store.get(info.key), info.key)
                except NotFound:
                    continue  # compacted meanwhile; the next round sees the merge
                hit = np.isin(entries["h"], wanted)
                if not hit.any():
                    continue
                kept = entries[~hit]
                if len(kept):
                    data = encode_indexed_segment(kept)
                    index.store.put(folder + _new_name(info.key.rsplit("/", 1)[-1], data), data, if_none_match=True)
                index.store.delete(info.key)
                removed += int(hit.sum())
            fresh = HashIndex(store=index.store, prefix=index.prefix, buckets=index.buckets,
                              compact_after=10**9)  # a plain read: never compacts
            if (fresh.lookup(mine) == ABSENT).all():
                break
        else:
            raise RuntimeError(f"index folder {prefixes[0]} still holds a purged hash after {attempts} rounds; re-run the purge")
    index._forget()
    return removed
