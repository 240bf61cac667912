"""The privacy unit as data: the exact set of records (content hashes) a run read, and their subjects.

A record is named by its curated ``content_sha256`` (32 bytes). Dedup gives each content hash to one
partition, but a late backfill can move it to another partition, so partitions are *not* the unit:
a run's ledger entry names the sorted digests it read (``RecordSet``), and per-record accounting
composes, for each record, exactly the runs that read it.

Encodings (both create-only objects next to the ledger entry)::

    RecordSet   b"PLR1" | uint64 big-endian count | count * 32-byte digests, strictly increasing
    SubjectMap  b"PLS1" | uint64 big-endian count | count * (32-byte record, 32-byte subject), by record

Pure logic only: no storage here.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

DIGEST_BYTES = 32
_RECORDS_MAGIC = b"PLR1"
_SUBJECTS_MAGIC = b"PLS1"
_HEADER = struct.Struct(">4sQ")


def _digest(value: str | bytes, *, what: str) -> bytes:
    if isinstance(value, bytes) and len(value) == DIGEST_BYTES:
        return value
    if isinstance(value, str):
        text = value[7:] if value.startswith("sha256:") else value
        if len(text) == 2 * DIGEST_BYTES:
            try:
                return bytes.fromhex(text)
            except ValueError:
                pass
    raise ValueError(f"{what} {value!r}: use a SHA-256 digest (64 hex characters or 32 bytes)")


def _array(data: bytes, width: int = DIGEST_BYTES) -> np.ndarray:
    # 'S32' compares as memcmp over the fixed width: exact for digests (equal bytes <=> equal items).
    return np.frombuffer(data, dtype=f"S{width}")


@dataclass(frozen=True)
class RecordSet:
    """Sorted, unique 32-byte content digests: the records one run read (hashable, comparable)."""

    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) % DIGEST_BYTES:
            raise ValueError("RecordSet.data must be concatenated 32-byte digests")
        arr = _array(self.data)
        if len(arr) > 1 and not bool(np.all(arr[1:] > arr[:-1])):
            raise ValueError("RecordSet.data must be strictly increasing (use RecordSet.of)")

    @classmethod
    def of(cls, hashes: Iterable[str | bytes]) -> RecordSet:
        """The set of ``hashes`` (hex ``content_sha256`` or raw digests; duplicates collapse)."""
        digests = sorted({_digest(h, what="content hash") for h in hashes})
        return cls(b"".join(digests))

    @classmethod
    def from_array(cls, arr: np.ndarray) -> RecordSet:
        return cls(np.unique(arr.astype(f"S{DIGEST_BYTES}")).tobytes())

    def __len__(self) -> int:
        return len(self.data) // DIGEST_BYTES

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (str, bytes)):
            return False
        d = _digest(value, what="content hash")
        arr = self.array()
        i = int(np.searchsorted(arr, np.array(d, dtype=f"S{DIGEST_BYTES}")))
        return i < len(arr) and arr[i] == d

    def array(self) -> np.ndarray:
        """The digests as a sorted numpy ``S32`` array (a read-only view)."""
        return _array(self.data)

    def hexes(self) -> list[str]:
        return [self.data[i:i + DIGEST_BYTES].hex() for i in range(0, len(self.data), DIGEST_BYTES)]

    def union(self, other: RecordSet) -> RecordSet:
        return RecordSet.from_array(np.concatenate([self.array(), other.array()]))

    def difference(self, other: RecordSet) -> RecordSet:
        return RecordSet(self.array()[~contains(other, self)].tobytes())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()

    def encode(self) -> bytes:
        return _HEADER.pack(_RECORDS_MAGIC, len(self)) + self.data

    @classmethod
    def decode(cls, blob: bytes, *, where: str = "record set") -> RecordSet:
        magic, n = _HEADER.unpack_from(blob) if len(blob) >= _HEADER.size else (b"", -1)
        if magic != _RECORDS_MAGIC or len(blob) != _HEADER.size + n * DIGEST_BYTES:
            raise ValueError(f"{where} is not a record set (bad header or length)")
        return cls(blob[_HEADER.size:])


def contains(haystack: RecordSet, needles: RecordSet) -> np.ndarray:
    """Boolean mask over ``needles``: which of them are in ``haystack`` (both sorted: one searchsorted)."""
    hay, want = haystack.array(), needles.array()
    if not len(hay) or not len(want):
        return np.zeros(len(want), dtype=bool)
    if len(hay) < len(want):  # search the smaller set in the larger one (both are sorted and unique)
        idx = np.searchsorted(want, hay)
        ok = idx < len(want)
        ok[ok] = want[idx[ok]] == hay[ok]
        found = np.zeros(len(want), dtype=bool)
        found[idx[ok]] = True
        return found
    idx = np.searchsorted(hay, want)
    found = idx < len(hay)
    found[found] = hay[idx[found]] == want[found]
    return found


def hash_subject(subject_id: str, *, domain: str) -> bytes:
    """The digest stored for a subject (e.g. patient id): SHA-256 of ``domain`` and the id, never the id itself."""
    if not isinstance(subject_id, str) or not subject_id:
        raise ValueError(f"subject_id {subject_id!r}: use a non-empty string")
    return hashlib.sha256(f"subject\x00{domain}\x00{subject_id}".encode()).digest()


@dataclass(frozen=True)
class SubjectMap:
    """Which subject each record of a run belongs to (records without a subject are absent)."""

    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) % (2 * DIGEST_BYTES):
            raise ValueError("SubjectMap.data must be concatenated (record, subject) digest pairs")

    @classmethod
    def of(cls, pairs: Mapping[str | bytes, str | bytes] | Iterable[tuple[str | bytes, str | bytes]]) -> SubjectMap:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        out: dict[bytes, bytes] = {}
        for record, subject in items:
            r, s = _digest(record, what="content hash"), _digest(subject, what="subject hash")
            if out.setdefault(r, s) != s:
                raise ValueError(f"record {r.hex()} is given two subjects")
        return cls(b"".join(r + out[r] for r in sorted(out)))

    def __len__(self) -> int:
        return len(self.data) // (2 * DIGEST_BYTES)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        w = DIGEST_BYTES
        return [(self.data[i:i + w], self.data[i + w:i + 2 * w]) for i in range(0, len(self.data), 2 * w)]

    def subjects(self) -> dict[bytes, list[bytes]]:
        """Subject digest -> its record digests (sorted)."""
        out: dict[bytes, list[bytes]] = {}
        for record, subject in self.pairs():
            out.setdefault(subject, []).append(record)
        return out

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()

    def encode(self) -> bytes:
        return _HEADER.pack(_SUBJECTS_MAGIC, len(self)) + self.data

    @classmethod
    def decode(cls, blob: bytes, *, where: str = "subject map") -> SubjectMap:
        magic, n = _HEADER.unpack_from(blob) if len(blob) >= _HEADER.size else (b"", -1)
        if magic != _SUBJECTS_MAGIC or len(blob) != _HEADER.size + n * 2 * DIGEST_BYTES:
            raise ValueError(f"{where} is not a subject map (bad header or length)")
        return cls(blob[_HEADER.size:])


def bound_contributions(records: Iterable[tuple[str | bytes, str | bytes | None]], *, max_per_subject: int,
                        run_key: str = "") -> tuple[RecordSet, SubjectMap]:
    """Keep at most ``max_per_subject`` records per subject (records with no subject are all kept).

    The choice is deterministic and depends only on the subject's own records and ``run_key``: the
    records with the smallest ``sha256(run_key | record)`` are kept, so a retry keeps the same ones and
    (with a fresh ``run_key`` per run) different runs do not always drop the same records.

    Args:
        records: ``(content hash, subject hash or None)`` of every candidate record.
        max_per_subject: k, the most records one subject may contribute to one run (>= 1).
        run_key: salt of the choice (e.g. the run id); empty keeps the smallest digests.

    Returns:
        The records kept, and the subject of each kept record that has one.
    """
    if isinstance(max_per_subject, bool) or not isinstance(max_per_subject, int) or max_per_subject < 1:
        raise ValueError(f"max_per_subject={max_per_subject!r}: use an integer >= 1")
    free: set[bytes] = set()
    by_subject: dict[bytes, set[bytes]] = {}
    for record, subject in records:
        r = _digest(record, what="content hash")
        if subject is None:
            free.add(r)
        else:
            by_subject.setdefault(_digest(subject, what="subject hash"), set()).add(r)
    salt = run_key.encode()
    kept: dict[bytes, bytes] = {}
    for subject, mine in by_subject.items():
        for r in sorted(mine, key=lambda d: (hashlib.sha256(salt + d).digest(), d))[:max_per_subject]:
            kept[r] = subject
    overlap = free & set(kept)
    if overlap:
        raise ValueError(f"record {min(overlap).hex()} is given both no subject and a subject")
    return RecordSet.of([*free, *kept]), SubjectMap.of(kept)


def max_delta(records: int) -> float:
    """The largest δ a run over ``records`` records may use: 1 / (10 n)."""
    return 1.0 / (10 * max(int(records), 1))


def check_delta(*, delta: float, records: int, domain: str) -> None:
    """Refuse a δ that is not well below 1/n for the ``records`` a run reads.

    Raises:
        ValueError: ``delta > 1 / (10 n)``; the message says which δ would do.
    """
    limit = max_delta(records)
    if delta > limit * (1 + 1e-12):
        raise ValueError(f"δ={delta:g} is too large for a run over {records} records of {domain}: δ must be at most "
                         f"1/(10·n) = {limit:.3g}. Set domains.{domain}.privacy.delta to {_round_down(limit)} or "
                         "lower (a smaller δ costs little ε), or read fewer records in this run")


def _round_down(value: float) -> str:
    """``value`` rounded down to one significant digit, as config text (e.g. 2.5e-6 -> '2e-06')."""
    exponent = int(np.floor(np.log10(value)))
    mantissa = int(value / 10 ** exponent + 1e-9)
    return f"{mantissa}e{exponent:+03d}".replace("+", "")
