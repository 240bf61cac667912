"""Batch matching: many texts scanned in one call, same matches as ``_scan`` per text.

Per text, ``pyahocorasick`` scans about 30-45 MB/s here and every candidate hit (most of them Latin
substrings inside longer words, rejected by the word-boundary rule) comes back to Python. For a
partition, this module finds the candidate hits of all texts in one call and only then goes back to
Python, for the few hits that survive: leftmost-longest, non-overlapping selection per text, exactly
as ``_scan`` does. Two implementations, same spans (``tests/pipelines/sensitive/test_batch.py`` runs
both against ``_scan``):

* compiled (``_fastscan.c``, built by ``python -m pipelines.native``): folds each text and looks up
  runs of word bytes and Bloom-filtered prefixes in hash tables, about 2x faster than the DFAs;
* fallback: folds the texts, joins their UTF-8 bytes with NUL separators into one buffer and scans it
  with the Rust ``aho-corasick`` DFAs (``ahocorasick_rs``, ~150 MB/s here), applying the word-boundary
  rule to every candidate hit with numpy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from pipelines.sensitive.folding import WORD_CHARS, fold

SEPARATOR = b"\x00"  # not a word character: a text's edges are word boundaries, as in _scan
CHUNK_BYTES = 8 << 20  # bounds the joined buffer and the hit arrays

try:
    from pipelines.sensitive import _fastscan
except ImportError:  # not built (python -m pipelines.native): the Aho-Corasick path gives the same spans
    _fastscan = None

IMPLEMENTATION = "compiled" if _fastscan is not None else "python"

_WORD_BYTES = frozenset(c.encode()[0] for c in WORD_CHARS)
_MARK = b"\x01"
_TO_MARK = bytes(c if c in _WORD_BYTES else 1 for c in range(256))  # every non-word byte -> the marker
_IS_WORD = np.zeros(256, dtype=bool)
for _c in WORD_CHARS:
    _IS_WORD[ord(_c)] = True


class BatchMatcher:
    """The lexicon compiled for batch scans. Build it through ``Lexicon.batch_matcher``.

    Three automata, each run over the part of the batch where its entries can occur:

    * whole-word entries (ASCII letters and digits only: most Latin words), matched with a marker on both
      sides in a copy of the buffer where every other byte is the marker, so the DFA reports only hits at
      word boundaries instead of every substring inside longer words;
    * entries holding a non-ASCII byte (CJK words...), matched only in the texts that have one;
    * the rest (ASCII entries with inner spaces or punctuation), matched in the whole buffer.

    The last two check word boundaries with numpy where an entry's edge is a letter or digit.

    Args:
        entries: the lexicon's ``(folded entry, category)`` pairs; none may contain a NUL or ``\\x01``.
    """

    def __init__(self, entries: Sequence[tuple[str, str]]) -> None:
        import ahocorasick_rs

        keys = [word.encode("utf-8") for word, _ in entries]
        if any(SEPARATOR in k or _MARK in k for k in keys):
            raise ValueError("an entry holds a NUL or \\x01 character; the batch matcher cannot separate texts with it")
        whole = [i for i, k in enumerate(keys) if k.translate(_TO_MARK) == k]
        taken = set(whole)
        wide = [i for i, k in enumerate(keys) if i not in taken and not k.isascii()]
        taken.update(wide)
        narrow = [i for i in range(len(keys)) if i not in taken]

        self._scanner = _fastscan.Scanner(keys, _IS_WORD.astype(np.uint8).tobytes()) if _fastscan is not None else None

        def automaton(patterns: list[bytes]):
            if not patterns or self._scanner is not None:  # the DFAs are the fallback only
                return None
            return ahocorasick_rs.BytesAhoCorasick(patterns, matchkind=ahocorasick_rs.MatchKind.Standard,
                                                   implementation=ahocorasick_rs.Implementation.DFA)
        self._whole = (automaton([_MARK + keys[i] + _MARK for i in whole]), np.array(whole, dtype=np.int64))
        self._wide = (automaton([keys[i] for i in wide]), np.array(wide, dtype=np.int64))
        self._narrow = (automaton([keys[i] for i in narrow]), np.array(narrow, dtype=np.int64))
        self._left = np.array([k[0] in _WORD_BYTES for k in keys], dtype=bool)
        self._right = np.array([k[-1] in _WORD_BYTES for k in keys], dtype=bool)
        self._categories = [category for _, category in entries]

    def scan(self, texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        """For each text, its leftmost-longest, non-overlapping ``(start, end, category)`` byte spans
        in the UTF-8 bytes of its folded form (what ``_scan`` returns for it)."""
        found = self.scan_sparse(texts)
        return [found.get(i, []) for i in range(len(texts))]

    def scan_sparse(self, texts: Sequence[str]) -> dict[int, list[tuple[int, int, str]]]:
        """``scan`` for the texts that hold a match only: ``{text index: spans}`` (most texts hold none)."""
        out: defaultdict[int, list[tuple[int, int, str]]] = defaultdict(list)
        if self._scanner is not None:
            rows = np.frombuffer(self._scanner.scan(texts, fold), dtype=np.int64).reshape(-1, 4)
            if len(rows):
                self._choose(rows[:, 3], rows[:, 0], rows[:, 1], rows[:, 2], out, 0)
            return dict(out)
        for i, text in enumerate(texts):
            if text.__class__ is not str:
                raise TypeError(f"scan: item {i} is {type(text).__name__}, not str")
        keys = [t.lower().encode() if t.isascii() else fold(t).encode("utf-8") for t in texts]  # fold's ASCII path
        start = 0
        while start < len(keys):
            size, stop = 0, start
            while stop < len(keys) and (stop == start or size + len(keys[stop]) < CHUNK_BYTES):
                size += len(keys[stop]) + 1
                stop += 1
            self._scan_chunk(keys[start:stop], out, start)
            start = stop
        return dict(out)

    def _scan_chunk(self, keys: list[bytes], out: list, base: int) -> None:
        found = []  # (entry ids, text index in keys, begin, end) of valid hits, begin/end within the text
        everything = list(range(len(keys)))
        automaton, ids = self._whole
        if automaton is not None:
            found.append(self._hits(automaton, ids, keys, everything, translate=True, check=False))
        automaton, ids = self._wide
        if automaton is not None:
            # An entry with a non-ASCII byte cannot occur in an ASCII text: scan only the others.
            found.append(self._hits(automaton, ids, keys, [i for i, k in enumerate(keys) if not k.isascii()],
                                    translate=False, check=True))
        automaton, ids = self._narrow
        if automaton is not None:
            found.append(self._hits(automaton, ids, keys, everything, translate=False, check=True))
        found = [f for f in found if f is not None and len(f[0])]
        if not found:
            return
        pattern, owner, begin, end = (np.concatenate(parts) for parts in zip(*found))
        self._choose(pattern, owner, begin, end, out, base)

    def _choose(self, pattern: np.ndarray, owner: np.ndarray, begin: np.ndarray, end: np.ndarray, out: list,
                base: int) -> None:
        """Keep the leftmost-longest, non-overlapping hits of each text (``_scan``'s selection)."""
        order = np.lexsort((-(end - begin), begin, owner))  # by text, then leftmost, then longest
        categories = self._categories
        reached: dict[int, int] = {}
        for i in order.tolist():
            text, a, b = int(owner[i]), int(begin[i]), int(end[i])
            if a >= reached.get(text, 0):
                out[base + text].append((a, b, categories[pattern[i]]))
                reached[text] = b

    def _hits(self, automaton, ids: np.ndarray, keys: list[bytes], chosen: list[int], *, translate: bool,
              check: bool):
        if not chosen:
            return None
        buffer = SEPARATOR + SEPARATOR.join([keys[i] for i in chosen]) + SEPARATOR
        hits = automaton.find_matches_as_indexes(buffer.translate(_TO_MARK) if translate else buffer, overlapping=True)
        if not hits:
            return None
        hits = np.asarray(hits, dtype=np.int64)
        pattern, begin, end = ids[hits[:, 0]], hits[:, 1], hits[:, 2]
        if translate:
            begin, end = begin + 1, end - 1  # drop the markers
        if check:
            data = np.frombuffer(buffer, dtype=np.uint8)  # a view: only the hits' neighbours are looked up
            valid = (~(self._left[pattern] & _IS_WORD[data[begin - 1]])
                     & ~(self._right[pattern] & _IS_WORD[data[end]]))
            pattern, begin, end = pattern[valid], begin[valid], end[valid]
        # Text j of `chosen` starts at offsets[j] in the buffer (after the separator before it).
        sizes = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))[np.asarray(chosen, dtype=np.int64)] + 1
        offsets = np.concatenate(([1], 1 + np.cumsum(sizes[:-1])))
        slot = np.searchsorted(offsets, begin, side="right") - 1
        return pattern, np.asarray(chosen, dtype=np.int64)[slot], begin - offsets[slot], end - offsets[slot]
