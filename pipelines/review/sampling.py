"""Which auto-labelled records a person reviews: every uncertain one, plus a reproducible random share.

Pure logic, no I/O. The random part ranks records by ``sha256(partition_key, id)``, so the
choice for a record depends only on the partition and the record's id: the same partition
always gives the same sample, whatever order the records come in, and two partitions give
independent samples.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Sequence

from pipelines.config.label import ReviewConfig  # defaults written once there (governance.label)

LOW_CONFIDENCE = "low_confidence"
SAMPLED = "sampled"


def review_quota(n: int, share: float) -> int:
    """``ceil(share * n)``, immune to float noise (``0.55 * 100`` is 55.00000000000001 in binary)."""
    return min(n, math.ceil(round(share * n, 9)))


def _rank(partition_key: str, record_id: Hashable) -> bytes:
    return hashlib.sha256(f"{partition_key}\x00{record_id}".encode()).digest()


def review_reasons(
    ids: Sequence[Hashable],
    confidences: Sequence[float],
    *,
    partition_key: str,
    share: float = ReviewConfig.share,
    low_confidence: float = ReviewConfig.low_confidence,
) -> dict[Hashable, str]:
    """The selected ids with why each was selected (``low_confidence`` or ``sampled``), in input order.

    See :func:`select_for_review` for the arguments.
    """
    ReviewConfig(share=share, low_confidence=low_confidence)
    if len(ids) != len(confidences):
        raise ValueError(f"{len(ids)} ids but {len(confidences)} confidences: pass one confidence per id")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique within a partition (deduplicate before labelling)")
    if not partition_key:
        raise ValueError("partition_key must be non-empty, e.g. 'legal/2026-10-04_2026-10-11'")
    low = {i for i, c in zip(ids, confidences) if c < low_confidence}
    need = review_quota(len(ids), share) - len(low)
    sampled: set[Hashable] = set()
    if need > 0:
        rest = sorted((i for i in ids if i not in low), key=lambda i: _rank(partition_key, i))
        sampled = set(rest[:need])
    return {i: (LOW_CONFIDENCE if i in low else SAMPLED) for i in ids if i in low or i in sampled}


def select_for_review(
    ids: Sequence[Hashable],
    confidences: Sequence[float],
    *,
    partition_key: str,
    share: float = ReviewConfig.share,
    low_confidence: float = ReviewConfig.low_confidence,
) -> list[Hashable]:
    """Pick the records of one partition that a person should review.

    Every record with ``confidence < low_confidence`` is selected; if that is fewer than
    ``ceil(share * n)``, records drawn by a seeded hash of ``partition_key`` and the id are added
    until it is not. The result is reproducible and independent of the input order.

    Args:
        ids: the partition's record ids (unique).
        confidences: the labeller's confidence for each id, same order.
        partition_key: names the partition and seeds the sample, e.g. ``legal/2026-10-04_2026-10-11``.
        share: the least fraction of the partition to select.
        low_confidence: the confidence below which a record is always selected.

    Returns:
        The selected ids, in input order.
    """
    return list(review_reasons(ids, confidences, partition_key=partition_key, share=share,
                               low_confidence=low_confidence))
