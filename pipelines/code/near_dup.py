"""Near-duplicate files by MinHash LSH over token shingles (datasketch), reported, never dropped:
exact file-level dedup is the pipeline's SHA-256 dedup; this only says which kept files are near copies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


@dataclass(frozen=True)
class NearDuplicate:
    """``path`` is a near copy of ``of`` (estimated Jaccard similarity of 5-token shingles)."""

    path: str
    of: str
    similarity: float

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "of": self.of, "similarity": self.similarity}


def _shingles(text: str, k: int) -> set[bytes]:
    tokens = _TOKEN.findall(text)
    if len(tokens) < k:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i:i + k]).encode() for i in range(len(tokens) - k + 1)}


def find_near_duplicates(files: Sequence[tuple[str, str]], *, threshold: float = 0.85, num_perm: int = 128,
                         shingle: int = 5) -> list[NearDuplicate]:
    """Each file that is a near copy of an earlier one (in the given order), with the earlier file it copies.

    Args:
        files: ``(path, text)`` in order; the first of a group is the original.
        threshold: the LSH's Jaccard threshold.
        num_perm: MinHash permutations (accuracy vs speed).
        shingle: tokens per shingle.
    """
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes: dict[str, MinHash] = {}
    found = []
    for index, (path, text) in enumerate(files):
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch(list(_shingles(text, shingle)))
        candidates = [int(c) for c in lsh.query(mh)]
        if candidates:
            best = max(candidates, key=lambda c: (hashes[str(c)].jaccard(mh), -c))
            similarity = hashes[str(best)].jaccard(mh)
            if similarity >= threshold:
                found.append(NearDuplicate(path, files[best][0], round(similarity, 3)))
        key = str(index)
        lsh.insert(key, mh)
        hashes[key] = mh
    return found
