"""Mask personal data consistently: the same value becomes the same token within a partition.

``mask_records`` replaces every e-mail, phone number, resident ID, card number and street address
(see ``pipelines.pii.detect`` for what counts as one) in ``text``, ``question``, ``answer`` and
``correction`` with a token such as ``[PHONE_1]``. Tokens are numbered per kind by order of first
appearance over the partition's records in order (fields in that order within a record), so the
same input always gives the same output, and a model trained on it sees that two records share a
phone number without seeing the number.

Raw values never leave this module: they are not logged, not put in results, and ``PiiMapping``
and ``Hit`` do not show them in their ``repr``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.config.governance import PiiConfig  # the governance.pii section (validated at load)
from pipelines.pii.detect import KINDS, Hit, find_pii, is_card_number, is_resident_id, luhn_ok

__all__ = ["KINDS", "TOKEN_LABELS", "Hit", "MaskResult", "PiiConfig", "PiiMapping", "find_pii",
           "is_card_number", "is_resident_id", "luhn_ok", "mask_records", "mask_text"]

TEXT_FIELDS = ("text", "question", "answer", "correction")  # masked when they are strings
TOKEN_LABELS = {"email": "EMAIL", "phone": "PHONE", "id": "ID", "card": "CARD", "address": "ADDR"}


class PiiMapping:
    """The tokens handed out so far: one per distinct (kind, normalized value), numbered per kind.

    Share one mapping across the texts that must agree (a partition, one feedback record); start a
    new one where numbering should restart. ``counts`` holds the occurrences masked per kind and
    ``masked`` their total.
    """

    __slots__ = ("_tokens", "_next", "_closed", "counts", "masked")

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}
        self._next: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._closed = False
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.masked = 0  # occurrences masked, all kinds

    @classmethod
    def numbered(cls, tokens: Iterable[tuple[str, str, int]]) -> PiiMapping:
        """A mapping whose tokens were numbered elsewhere: ``(kind, key, n)`` gives the value token ``n``
        of its kind. A sharded partition numbers its values over every shard first
        (``pipelines.weekly.shards``); a value it did not number is an error, never a new token."""
        mapping = cls()
        for kind, key, n in tokens:
            mapping._tokens[(kind, key)] = f"[{TOKEN_LABELS[kind]}_{n}]"
            mapping._next[kind] = max(mapping._next[kind], n)
        mapping._closed = True
        return mapping

    def values(self) -> list[tuple[str, str]]:
        """The distinct ``(kind, normalized value)`` pairs in order of first appearance.

        Raw personal data: only for the numbering of a sharded partition, staged with its run."""
        return list(self._tokens)

    def token(self, kind: str, key: str) -> str:
        """The token of a value (a new one, numbered next for its kind, on first sight); counts it."""
        self.counts[kind] += 1
        self.masked += 1
        token = self._tokens.get((kind, key))
        if token is None:
            if self._closed:
                raise KeyError(f"a {kind} value that the partition's numbering does not hold: number every shard's "
                               "values first (pipelines.weekly.shards.number_pii)")
            self._next[kind] += 1
            token = self._tokens[(kind, key)] = f"[{TOKEN_LABELS[kind]}_{self._next[kind]}]"
        return token

    @property
    def distinct(self) -> dict[str, int]:
        """Distinct values per kind seen so far."""
        return dict(self._next)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:  # counts only: never the values
        return f"PiiMapping(distinct={self.distinct}, counts={self.counts})"


_ALL = PiiConfig()


def mask_text(text: str, *, mapping: PiiMapping, config: PiiConfig = _ALL) -> str:
    """Replace the personal data in one text with tokens.

    Args:
        text: the text to mask.
        mapping: the tokens handed out so far; updated with new values and counts.
        config: which kinds to mask (all by default).

    Returns:
        The text with every hit replaced by its token (the text itself when there is none).
    """
    hits = find_pii(text, kinds=config.kinds)
    if not hits:
        return text
    parts = []
    last = 0
    for hit in hits:
        parts.append(text[last:hit.start])
        parts.append(mapping.token(hit.kind, hit.key))
        last = hit.end
    parts.append(text[last:])
    return "".join(parts)


@dataclass(frozen=True)
class MaskResult:
    """What ``mask_records`` produced.

    Attributes:
        rows: The records in input order, as new dicts with text fields masked.
        counts: Occurrences masked per enabled kind (0 where none).
        distinct: Distinct values masked per enabled kind (the highest token number).
        pii_found: Records in which at least one value was masked.
    """

    rows: tuple[dict, ...]
    counts: dict[str, int]
    distinct: dict[str, int]
    pii_found: int


def mask_records(rows: Iterable[dict], *, config: PiiConfig = _ALL, mapping: PiiMapping | None = None) -> MaskResult:
    """Mask the personal data of a partition's records with tokens consistent across them.

    Args:
        rows: the partition's records, in their partition order (it decides the numbering).
        config: which kinds to mask.
        mapping: the tokens handed out to the partition's earlier records, when it streams through in
            batches (one mapping per partition, batches in order); a new one by default.

    Returns:
        The masked records (new dicts, other fields unchanged) and what was masked: ``counts`` and
        ``pii_found`` for these rows, ``distinct`` for the mapping so far.
    """
    mapping = PiiMapping() if mapping is None else mapping
    before_counts = dict(mapping.counts)
    out: list[dict] = []
    found = 0
    kinds = config.kinds
    for row in rows:
        before = mapping.masked
        masked = dict(row)
        for name in TEXT_FIELDS:
            value = masked.get(name)
            if isinstance(value, str) and value:
                masked[name] = mask_text(value, mapping=mapping, config=config)
        if mapping.masked != before:
            found += 1
        out.append(masked)
    return MaskResult(rows=tuple(out), counts={k: mapping.counts[k] - before_counts[k] for k in kinds},
                      distinct={k: mapping.distinct[k] for k in kinds}, pii_found=found)
