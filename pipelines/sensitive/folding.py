"""Text folding for sensitive-word matching: NFKC per character, lower case, final sigma as sigma.

Shared by the lexicon (``pipelines.sensitive.wordlist``) and the batch matcher (``pipelines.sensitive.batch``),
which both import it; it imports neither.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")  # folded text has no A-Z


@lru_cache(maxsize=1)
def _compat() -> tuple[dict[str, str], re.Pattern[str]]:
    """Every character whose NFKC form differs from itself, and a regex that splits them out.

    Built on first use (~0.15 s). Nothing below U+00A0 and nothing beyond plane 2 changes under NFKC.
    The class lists the BMP characters (sre turns that into one table lookup) plus every astral
    character as one range (astral characters not in the table map to themselves).
    """
    table: dict[str, str] = {}
    for cp in range(0xA0, 0x30000):
        if 0xD800 <= cp < 0xE000:
            continue
        char = chr(cp)
        folded = unicodedata.normalize("NFKC", char)
        if folded != char:
            table[char] = folded
    bmp = sorted(ord(c) for c in table if ord(c) < 0x10000)
    runs: list[tuple[int, int]] = []
    for cp in bmp:
        if runs and cp == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], cp)
        else:
            runs.append((cp, cp))
    body = "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in runs)
    return table, re.compile(f"([{body}\\U00010000-\\U0010ffff])")


def fold_char(char: str) -> str:
    """The folded form of one character: NFKC, then lower case, with final sigma as plain sigma."""
    return _compat()[0].get(char, char).lower().replace("ς", "σ")


def fold(text: str) -> str:
    """Fold a text for matching: ``fold_char`` of every character, concatenated.

    It is NFKC and lower-casing taken character by character, which is what lets a match be mapped
    back to the original characters; it differs from ``unicodedata.normalize("NFKC", text).lower()``
    only where characters compose across each other (a letter followed by a separate combining accent
    stays two characters). Fast paths: ASCII text is only lower-cased, and text that is already NFKC
    skips the table.
    """
    if text.isascii():
        return text.lower()
    if not unicodedata.is_normalized("NFKC", text):
        table, split = _compat()
        parts = split.split(text)
        odd = parts[1::2]
        parts[1::2] = map(table.get, odd, odd)
        text = "".join(parts)
    return text.lower().replace("ς", "σ")
