"""Batch matching: many texts scanned in one pass of a compiled DFA, same matches as ``_scan`` per text.

Per text, ``pyahocorasick`` scans about 30-45 MB/s here and every candidate hit (most of them Latin
substrings inside longer words, rejected by the word-boundary rule) comes back to Python. For a
partition, this module folds the texts, joins their UTF-8 bytes with NUL separators into one buffer,
scans it once with the Rust ``aho-corasick`` DFA (``ahocorasick_rs``, ~150 MB/s here), applies the
word-boundary rule to every candidate hit with numpy, and only then goes back to Python, for the few
hits that survive: leftmost-longest, non-overlapping selection per text, exactly as ``_scan`` does.
The equivalence is a test (``tests/pipelines/sensitive/test_batch.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.sensitive.wordlist import WORD_CHARS, fold

SEPARATOR = b"\x00"  # not a word character: a text's edges are word boundaries, as in _scan
CHUNK_BYTES = 8 << 20  # bounds the joined buffer and the hit arrays

_WORD_BYTES = frozenset(c.encode()[0] for c in WORD_CHARS)
_MARK = b"\x01"
_TO_MARK = bytes(c if c in _WORD_BYTES else 1 for c in range(256))  # every non-word byte -> the marker
_IS_WORD = np.zeros(256, dtype=bool)
for _c in WORD_CHARS:
    _IS_WORD[ord(_c)] = True


class BatchMatcher:
    """The lexicon compiled for batch scans. Build it through ``Lexicon.batch_matcher``.

    Args:
        entries: the lexicon's ``(folded entry, category)`` pairs; none may contain a NUL.
    """

    def __init__(self, entries: Sequence[tuple[str, str]]) -> None:
        import ahocorasick_rs

        keys = [word.encode("utf-8") for word, _ in entries]
        if any(SEPARATOR in k or _MARK in k for k in keys):
            raise ValueError("an entry holds a NUL or \\x01 character; the batch matcher cannot separate texts with it")
        # Whole-word entries (ASCII letters and digits only: most Latin words) are matched with a marker on
        # both sides in a copy of the buffer where every other byte is the marker, so the DFA reports only
        # hits at word boundaries instead of every substring inside longer words. The rest (CJK, entries
        # with inner punctuation or spaces) are matched in the buffer itself, boundaries checked with numpy.
        self._whole = [i for i, k in enumerate(keys) if k.translate(_TO_MARK) == k and _MARK not in k]
        whole = set(self._whole)
        self._other = [i for i in range(len(keys)) if i not in whole]
        kind = ahocorasick_rs.MatchKind.Standard
        dfa = ahocorasick_rs.Implementation.DFA
        self._whole_automaton = (ahocorasick_rs.BytesAhoCorasick(
            [_MARK + keys[i] + _MARK for i in self._whole], matchkind=kind, implementation=dfa)
            if self._whole else None)
        self._other_automaton = (ahocorasick_rs.BytesAhoCorasick(
            [keys[i] for i in self._other], matchkind=kind, implementation=dfa) if self._other else None)
        self._whole_ids = np.array(self._whole, dtype=np.int64)
        self._other_ids = np.array(self._other, dtype=np.int64)
        self._left = np.array([k[0] in _WORD_BYTES for k in keys], dtype=bool)
        self._right = np.array([k[-1] in _WORD_BYTES for k in keys], dtype=bool)
        self._categories = [category for _, category in entries]

    def scan(self, texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        """For each text, its leftmost-longest, non-overlapping ``(start, end, category)`` byte spans
        in the UTF-8 bytes of its folded form (what ``_scan`` returns for it)."""
        out: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        keys = [fold(t).encode("utf-8") for t in texts]
        start = 0
        while start < len(keys):
            size, stop = 0, start
            while stop < len(keys) and (stop == start or size + len(keys[stop]) < CHUNK_BYTES):
                size += len(keys[stop]) + 1
                stop += 1
            self._scan_chunk(keys[start:stop], out, start)
            start = stop
        return out

    def _scan_chunk(self, keys: list[bytes], out: list, base: int) -> None:
        buffer = SEPARATOR + SEPARATOR.join(keys) + SEPARATOR
        found = []  # (entry ids, begin, end) arrays of valid hits
        if self._other_automaton is not None:
            hits = self._other_automaton.find_matches_as_indexes(buffer, overlapping=True)
            if hits:
                hits = np.asarray(hits, dtype=np.int64)
                pattern, begin, end = self._other_ids[hits[:, 0]], hits[:, 1], hits[:, 2]
                data = np.frombuffer(buffer, dtype=np.uint8)  # a view: only the hits' neighbours are looked up
                valid = (~(self._left[pattern] & _IS_WORD[data[begin - 1]])
                         & ~(self._right[pattern] & _IS_WORD[data[end]]))
                found.append((pattern[valid], begin[valid], end[valid]))
        if self._whole_automaton is not None:
            hits = self._whole_automaton.find_matches_as_indexes(buffer.translate(_TO_MARK), overlapping=True)
            if hits:
                hits = np.asarray(hits, dtype=np.int64)
                found.append((self._whole_ids[hits[:, 0]], hits[:, 1] + 1, hits[:, 2] - 1))  # drop the markers
        if not found or not any(len(f[0]) for f in found):
            return
        pattern, begin, end = (np.concatenate(parts) for parts in zip(*found))
        # Text i's bytes start at offsets[i] in the buffer (after the separator before it).
        offsets = np.cumsum([1] + [len(k) + 1 for k in keys[:-1]], dtype=np.int64)
        owner = np.searchsorted(offsets, begin, side="right") - 1
        order = np.lexsort((-(end - begin), begin, owner))  # by text, then leftmost, then longest
        categories = self._categories
        reached: dict[int, int] = {}
        for i in order.tolist():
            text = int(owner[i])
            a, b = int(begin[i] - offsets[text]), int(end[i] - offsets[text])
            if a >= reached.get(text, 0):
                out[base + text].append((a, b, categories[pattern[i]]))
                reached[text] = b
