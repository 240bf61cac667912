"""Text normalization and hashing for exact dedup.

``normalize`` is NFKC followed by whitespace folding (runs of Unicode whitespace become one space,
ends stripped). Governance steps (cleaning, PII masking) run before this, so the hash is taken over
the cleaned, masked text they produce.

``content_hash`` is the definition. ``packed_hashes`` computes it for a whole partition in the
compiled ``_fasthash`` extension when it is built (``python -m pipelines.native``; the
bootstrap does it) and falls back to a batched pure-Python path otherwise; both give identical bytes
(tests/pipelines/dedup/test_fasthash.py checks every code point and random text).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

_sha256 = hashlib.sha256
_nfkc = unicodedata.normalize
_is_nfkc = unicodedata.is_normalized


# PII tokens are numbered per partition ("[PHONE_2]") so training sees which values repeat; the hash
# ignores the number, so records that differ only in personal data collapse.
_PII_TOKEN = re.compile(r"\[(EMAIL|PHONE|ID|CARD|ADDR)_\d+\]")


def strip_token_numbers(text: str) -> str:
    """``[PHONE_2]`` -> ``[PHONE]`` (cheap when the text has no '[')."""
    return _PII_TOKEN.sub(r"[\1]", text) if "[" in text else text


def normalize(text: str) -> str:
    """PII token numbers dropped, NFKC, then whitespace folded (ASCII is already NFKC: no Unicode pass)."""
    text = strip_token_numbers(text)
    if not text.isascii() and not _is_nfkc("NFKC", text):
        text = _nfkc("NFKC", text)
    return " ".join(text.split())


def content_hash(text: str) -> bytes:
    """SHA-256 of the normalized text, as 32 raw bytes."""
    return _sha256(normalize(text).encode("utf-8")).digest()


def _needs_normalizing(encoded: Sequence[bytes]):  # -> numpy bool array
    """Which encoded texts are not already normalized, decided for the whole batch in a few numpy passes.

    A UTF-8 text is already normalized when it is ASCII (NFKC is the identity there), has no control
    or whitespace byte other than single inner spaces, and no leading/trailing space. Everything else
    takes the exact slow path, so the fast path can only skip work, never change a hash.
    """
    import numpy as np

    n = len(encoded)
    lengths = np.fromiter(map(len, encoded), np.int64, n)
    joined = np.frombuffer(b"\x7f".join(encoded), np.int8)  # 0x7f separates texts and is flagged by nothing
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    space = joined == 32
    bad = joined < 32  # control bytes, and (as negative int8) every non-ASCII byte
    bad[1:] |= space[1:] & space[:-1]
    flags = lengths == 0
    positions = np.flatnonzero(bad)
    if len(positions):
        flags[np.searchsorted(starts, positions, side="right") - 1] = True
    if len(joined):
        flags |= joined[np.minimum(starts, len(joined) - 1)] == 32
        flags |= joined[np.maximum(starts + lengths - 1, 0)] == 32
    return flags


def _python_hashes(texts: Sequence[str], *, chunk: int = 8192) -> list[bytes]:
    """``content_hash`` of many texts in pure Python, batched: the fallback of ``packed_hashes``."""
    out: list[bytes] = []
    for lo in range(0, len(texts), chunk):
        part = [strip_token_numbers(t) for t in texts[lo:lo + chunk]]
        encoded = [t.encode("utf-8") for t in part]
        flags = _needs_normalizing(encoded)
        if not flags.any():
            out.extend(_sha256(e).digest() for e in encoded)
        else:
            out.extend(
                _sha256(normalize(t).encode("utf-8")).digest() if slow else _sha256(e).digest()
                for e, slow, t in zip(encoded, flags.tolist(), part)
            )
    return out


try:
    from pipelines.dedup import _fasthash
except ImportError:  # not built: the pure-Python path gives the same hashes
    _fasthash = None

IMPLEMENTATION = "compiled" if _fasthash is not None else "python"


def packed_hashes(texts: Sequence[str]) -> bytes:
    """``content_hash`` of each text, concatenated (32 bytes each): ``np.frombuffer(..., "S32")`` views it."""
    if _fasthash is not None:
        return _fasthash.hash_texts(texts, strip_token_numbers, _nfkc)
    return b"".join(_python_hashes(texts))


def content_hashes(texts: Sequence[str]) -> list[bytes]:
    """``content_hash`` of each text, as a list of 32-byte digests."""
    packed = packed_hashes(texts)
    return [packed[i:i + 32] for i in range(0, len(packed), 32)]
