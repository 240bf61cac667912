"""The sensitive-word lexicon: text folding, word-list files, and the compiled Aho-Corasick automaton.

See the package docstring (``pipelines.sensitive``) for the word-list format and the matching rules.

The automaton runs over the UTF-8 bytes of the folded text (each byte one character of a latin-1
string), not over its code points: pyahocorasick finds a node's child by a linear search, and with
code points the root has one child per distinct first character (tens of thousands for a large CJK
list), which makes the scan ~30x slower. With bytes no node has more than 256 children, and UTF-8
being self-synchronizing, a match of a whole encoded entry always starts and ends on character
boundaries.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import accumulate
from pathlib import Path

import ahocorasick

from pipelines.config import PROJECT_ROOT, ConfigError
# Folding is one floor down (pipelines.sensitive.folding) so that the batch matcher can use it without this module.
from pipelines.sensitive.folding import WORD_CHARS, fold, fold_char

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
BUNDLED_PATH = LEXICON_DIR / "badwords.json"
BUNDLED_VERSION = "nonebot-plugin-paminet-nodirtymsg==0.3.10"
DEFAULT_EXTENSION = PROJECT_ROOT / "config" / "sensitive_words.txt"
DEFAULT_CATEGORY = "general"
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # it becomes part of a rejection reason
# Bumped whenever folding or matching rules change, so the digest (in manifests) changes with them.
MATCHING_VERSION = "sensitive-lexicon/v1"

# pyahocorasick searches a node's children in insertion order, so entries are inserted in an order
# that puts the bytes of frequent characters first at every node (1.5x faster scans of Chinese
# text): the commonest Chinese characters (head of the usual modern-Chinese frequency lists), then
# English letters by frequency, digits and space; other characters follow in code-point order.
_FREQUENT = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
    "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使"
    "点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明"
    "看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料"
    "etaoinsrhldcumfpgwybvkxjqz0123456789 "
)
_RANK = {c: i for i, c in enumerate(_FREQUENT)}


class LexiconError(ConfigError):
    """A word list is unreadable or malformed; the message names the file and line and what to do."""


class _FoldedBytes(dict):
    """char -> UTF-8 length of its folded form, filled on demand."""

    def __missing__(self, char: str) -> int:
        size = self[char] = len(fold_char(char).encode("utf-8"))
        return size


_FOLDED_BYTES = _FoldedBytes()


def byte_offsets(text: str) -> list[int]:
    """Where each character of ``text`` starts in the UTF-8 bytes of ``fold(text)`` (plus the end)."""
    return list(accumulate(map(_FOLDED_BYTES.__getitem__, text), initial=0))


def automaton_key(folded: str) -> str:
    """The string the automaton scans: the UTF-8 bytes of folded text, one latin-1 character each."""
    return folded if folded.isascii() else folded.encode("utf-8").decode("latin-1")


# ----------------------------------------------------------------------------------- lexicon
@dataclass(frozen=True, repr=False)
class Lexicon:
    """Sensitive entries, folded, each with one category, and the automaton compiled from them.

    Build it with ``Lexicon.from_entries`` or ``load_lexicon``. It pickles (with the automaton, once
    built), so a worker can receive a built lexicon instead of building it again.

    Attributes:
        entries: ``(folded entry, category)`` pairs, sorted by entry, entries unique.
        sources: Where the entries came from (for manifests and error messages).
    """

    entries: tuple[tuple[str, str], ...]
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        words = [w for w, _ in self.entries]
        if any(a >= b for a, b in zip(words, words[1:])):
            raise LexiconError("Lexicon.entries must be sorted and unique; build it with Lexicon.from_entries")
        for category in {c for _, c in self.entries}:
            if not isinstance(category, str) or not CATEGORY_RE.match(category):
                raise LexiconError(f"category {category!r} must match {CATEGORY_RE.pattern}")
        if "" in words:
            raise LexiconError("Lexicon.entries holds an empty entry")

    @classmethod
    def from_entries(cls, entries: Iterable[str | tuple[str, str]], *, sources: Sequence[str] = ()) -> Lexicon:
        """Fold, check and sort entries; a bare string gets the category ``general``.

        Raises:
            LexiconError: on an entry that folds to nothing, a bad category, or one entry given
                two categories.
        """
        folded: dict[str, str] = {}
        for item in entries:
            if isinstance(item, str):
                item = (item, DEFAULT_CATEGORY)
            if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise LexiconError(f"entry {item!r}: use a string or an (entry, category) pair of strings")
            word, category = item
            key = fold(word.strip())
            if not key:
                raise LexiconError(f"entry {word!r} is empty after folding; remove it")
            if "\t" in key or "\n" in key:
                raise LexiconError(f"entry {word!r} holds a tab or a line break; remove it")
            if not CATEGORY_RE.match(category):
                raise LexiconError(f"entry {word!r}: category {category!r} must match {CATEGORY_RE.pattern}")
            if folded.setdefault(key, category) != category:
                raise LexiconError(f"entry {word!r} has two categories ({folded[key]!r}, {category!r}); keep one")
        return cls(entries=tuple(sorted(folded.items())), sources=tuple(sources))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:  # never the words themselves: reprs end up in logs
        return f"Lexicon({len(self.entries)} entries, digest={self.digest[:16]}, sources={list(self.sources)})"

    @cached_property
    def digest(self) -> str:
        """SHA-256 (hex) over the matching rules' version and the sorted ``entry<TAB>category`` lines."""
        h = hashlib.sha256(MATCHING_VERSION.encode() + b"\n")
        for word, category in self.entries:
            h.update(f"{word}\t{category}\n".encode("utf-8"))
        return h.hexdigest()

    @cached_property
    def categories(self) -> tuple[str, ...]:
        """The categories in use, sorted."""
        return tuple(sorted({c for _, c in self.entries}))

    @cached_property
    def automaton(self) -> ahocorasick.Automaton | None:
        """The compiled automaton (None for an empty lexicon); built on first use.

        Each entry's value is ``(UTF-8 length, category, needs a word boundary on the left, ...on
        the right)``: a side needs one when the entry's character there is an ASCII letter or digit.
        """
        if not self.entries:
            return None
        automaton = ahocorasick.Automaton()
        for word, category in sorted(self.entries, key=_insertion_order):
            key = automaton_key(word)
            automaton.add_word(key, (len(key), category, key[0] in WORD_CHARS, key[-1] in WORD_CHARS))
        automaton.make_automaton()
        return automaton


    @cached_property
    def batch_matcher(self):
        """The lexicon compiled for scanning many texts at once (``pipelines.sensitive.batch``);
        None for an empty lexicon. Not pickled: a worker rebuilds it (about a second for 120k entries)."""
        if not self.entries:
            return None
        from pipelines.sensitive.batch import BatchMatcher

        return BatchMatcher(self.entries)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("batch_matcher", None)  # the Rust automaton does not pickle
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _insertion_order(entry: tuple[str, str]) -> list[int]:
    return [_RANK.get(c, 0x200 + ord(c)) for c in entry[0]]


# -------------------------------------------------------------------------------- word lists
@dataclass(frozen=True)
class WordList:
    """One parsed word-list file.

    Attributes:
        path: The file.
        entries: ``(entry, category, line)`` in file order (entries as written, unfolded).
        exclusions: ``(entry, line)`` of ``!entry`` lines.
    """

    path: str
    entries: tuple[tuple[str, str, int], ...]
    exclusions: tuple[tuple[str, int], ...]


def parse_word_list(data: bytes, *, path: str) -> WordList:
    """Parse a word-list file (format in the package docstring).

    Args:
        data: the file's bytes.
        path: its name, for error messages.

    Raises:
        LexiconError: naming ``path:line`` for a line that is not UTF-8, has more than one tab, an
            empty entry, a bad category, an entry that folds to nothing, or an entry given two
            categories in the file.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    entries: list[tuple[str, str, int]] = []
    exclusions: list[tuple[str, int]] = []
    seen: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise LexiconError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("!"):
            word = stripped[1:].strip()
            if "\t" in word:
                raise LexiconError(f"{where}: an exclusion ('!entry') takes no category; remove the tab and what follows")
            if not fold(word):
                raise LexiconError(f"{where}: '!' must be followed by the entry to exclude")
            exclusions.append((word, number))
            continue
        if line.count("\t") > 1:
            raise LexiconError(f"{where}: more than one tab; write 'entry<TAB>category'")
        word, _, category = line.partition("\t")
        word, category = word.strip(), category.strip() or DEFAULT_CATEGORY
        if not word:
            raise LexiconError(f"{where}: empty entry before the tab; write 'entry<TAB>category'")
        if not CATEGORY_RE.match(category):
            raise LexiconError(f"{where}: category {category!r} must match {CATEGORY_RE.pattern} "
                               "(lower-case letters, digits, '_'; it becomes part of a rejection reason)")
        key = fold(word)
        if not key:
            raise LexiconError(f"{where}: entry {word!r} is empty after NFKC folding; remove it")
        if key in seen and seen[key][0] != category:
            raise LexiconError(f"{where}: entry {word!r} has category {category!r} here and {seen[key][0]!r} "
                               f"on line {seen[key][1]}; keep one")
        seen.setdefault(key, (category, number))
        entries.append((word, category, number))
    return WordList(path=path, entries=tuple(entries), exclusions=tuple(exclusions))


def bundled_words(path: Path = BUNDLED_PATH) -> tuple[str, ...]:
    """The ``badwords`` of the vendored ``badwords.json`` (``{"badwords": [...], "whitelist": [...]}``).

    Raises:
        LexiconError: when the file is not that shape.
    """
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexiconError(f"{path}: cannot read the bundled list ({exc}); restore it from the package named in NOTICE") from None
    words = data.get("badwords") if isinstance(data, dict) else None
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise LexiconError(f"{path}: expected {{\"badwords\": [non-empty strings]}}; restore it from NOTICE")
    return tuple(words)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def load_lexicon(*, extensions: Sequence[str | Path] = (DEFAULT_EXTENSION,), bundled: bool = True) -> Lexicon:
    """Build the lexicon from the bundled list and word-list files.

    Entries of later sources override the category of earlier ones (bundled entries are
    ``general``); ``!entry`` exclusions apply after every addition, whichever file holds them.

    Args:
        extensions: word-list files, in order.
        bundled: include the vendored ``badwords.json``.

    Raises:
        LexiconError: for a missing or malformed file, or an exclusion of an entry that no source
            adds (a typo, or an entry upstream dropped); the message names ``file:line``.
    """
    merged: dict[str, tuple[str, str]] = {}  # folded -> (category, source)
    sources: list[str] = []
    if bundled:
        for word in bundled_words():
            merged[fold(word.strip())] = (DEFAULT_CATEGORY, BUNDLED_VERSION)
        sources.append(BUNDLED_VERSION)
    lists = []
    for ext in extensions:
        path = Path(ext)
        name = _display(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LexiconError(f"{name}: cannot read the word list ({exc.strerror}); fix the path") from None
        wordlist = parse_word_list(data, path=name)
        lists.append(wordlist)
        for word, category, _ in wordlist.entries:
            merged[fold(word)] = (category, name)
        sources.append(name)
    for wordlist in lists:
        for word, line in wordlist.exclusions:
            if merged.pop(fold(word), None) is None:
                raise LexiconError(f"{wordlist.path}:{line}: '!{word}' excludes an entry that no list adds; "
                                   "check the spelling or remove the line")
    return Lexicon(entries=tuple(sorted((w, c) for w, (c, _) in merged.items())), sources=tuple(sources))


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The bundled list plus ``config/sensitive_words.txt``, loaded and compiled once per process."""
    lexicon = load_lexicon()
    lexicon.automaton  # noqa: B018 - compile now, not inside the first batch
    return lexicon


def char_spans(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Map ``[start, end)`` byte spans of the automaton key of ``fold(text)`` to character spans of ``text``.

    A span that covers part of a character's folded form (``㈱`` folds to ``(株)``) covers the whole
    character.
    """
    if text.isascii():
        return list(spans)
    starts = byte_offsets(text)
    return [(bisect_right(starts, a) - 1, bisect_left(starts, b)) for a, b in spans]
