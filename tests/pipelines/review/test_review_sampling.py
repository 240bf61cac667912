"""select_for_review(): every low-confidence record, at least ceil(share * n) in all, reproducible per partition."""

from __future__ import annotations

import math
import random

import pytest

from pipelines.review import ReviewConfig, review_quota, review_reasons, select_for_review


def _partition(n: int, *, seed: int = 7, low_share: float = 0.0) -> tuple[list[str], list[float]]:
    rng = random.Random(seed)
    ids = [f"r-{i:05d}" for i in range(n)]
    confidences = [rng.uniform(0.3, 0.59) if rng.random() < low_share else rng.uniform(0.6, 1.0) for _ in ids]
    return ids, confidences


@pytest.mark.parametrize("n", range(1, 8))
def test_small_partitions_get_at_least_the_quota(n):
    ids, confidences = _partition(n)
    chosen = select_for_review(ids, confidences, partition_key="legal/2026-10-04_2026-10-11")
    assert len(chosen) == math.ceil(0.15 * n) == 1 + (n > 6)  # 1 for n = 1..6, 2 for n = 7
    assert len(set(chosen)) == len(chosen) and set(chosen) <= set(ids)


@pytest.mark.parametrize("n", [1, 2, 5, 7, 20, 101, 10_000])
@pytest.mark.parametrize("low_share", [0.0, 0.05, 0.5])
def test_all_low_confidence_included_and_quota_met(n, low_share):
    ids, confidences = _partition(n, low_share=low_share)
    chosen = select_for_review(ids, confidences, partition_key="medical/2026-10-11_2026-10-18")
    low = {i for i, c in zip(ids, confidences) if c < 0.6}
    assert low <= set(chosen)
    assert len(chosen) >= math.ceil(0.15 * n)
    # Sampling only tops up: never more than the quota unless low-confidence records exceed it.
    assert len(chosen) == max(len(low), review_quota(n, 0.15))


def test_large_partition_exact_counts():
    ids, confidences = _partition(10_000, low_share=0.05)
    reasons = review_reasons(ids, confidences, partition_key="finance/2026-10-04_2026-10-11")
    low = sum(c < 0.6 for c in confidences)
    assert sum(r == "low_confidence" for r in reasons.values()) == low
    assert sum(r == "sampled" for r in reasons.values()) == 1500 - low
    assert len(reasons) == 1500


def test_quota_is_immune_to_float_noise():
    assert 0.55 * 100 > 55  # 55.00000000000001: a plain ceil would take 56
    assert review_quota(100, 0.55) == 55
    assert review_quota(20, 0.15) == 3
    assert review_quota(0, 0.15) == 0
    assert review_quota(7, 1.0) == 7


def test_same_key_same_output_whatever_the_input_order():
    ids, confidences = _partition(1000, low_share=0.05)
    key = "legal/2026-10-04_2026-10-11"
    first = select_for_review(ids, confidences, partition_key=key)
    assert select_for_review(ids, confidences, partition_key=key) == first
    pairs = list(zip(ids, confidences))
    random.Random(3).shuffle(pairs)
    shuffled = select_for_review([i for i, _ in pairs], [c for _, c in pairs], partition_key=key)
    assert set(shuffled) == set(first)
    assert shuffled == [i for i, _ in pairs if i in set(first)]  # output keeps the input order


def test_different_keys_sample_differently():
    ids, confidences = _partition(10_000)
    a = set(select_for_review(ids, confidences, partition_key="legal/2026-10-04_2026-10-11"))
    b = set(select_for_review(ids, confidences, partition_key="legal/2026-10-11_2026-10-18"))
    assert len(a) == len(b) == 1500
    assert len(a & b) < 400  # independent 15% samples overlap by ~225


def test_different_keys_sample_differently_in_small_partitions():
    ids, confidences = _partition(7)
    picks = {tuple(select_for_review(ids, confidences, partition_key=f"legal/week-{k}")) for k in range(20)}
    assert len(picks) > 5


def test_low_confidence_threshold_and_share_are_parameters():
    ids = ["a", "b", "c", "d"]
    assert select_for_review(ids, [0.1, 0.9, 0.9, 0.9], partition_key="k", share=0.0) == ["a"]
    assert select_for_review(ids, [0.69, 0.9, 0.9, 0.9], partition_key="k", share=0.0, low_confidence=0.7) == ["a"]
    assert select_for_review(ids, [0.9] * 4, partition_key="k", share=1.0) == ids
    assert select_for_review([], [], partition_key="k") == []


@pytest.mark.parametrize("kwargs, message", [
    ({"ids": ["a"], "confidences": [0.5, 0.6]}, "1 ids but 2 confidences"),
    ({"ids": ["a", "a"], "confidences": [0.5, 0.6]}, "ids must be unique"),
    ({"ids": ["a"], "confidences": [0.5], "share": 1.5}, "share=1.5 must be in"),
    ({"ids": ["a"], "confidences": [0.5], "partition_key": ""}, "partition_key must be non-empty"),
])
def test_invalid_arguments_fail_early(kwargs, message):
    kwargs = {"partition_key": "k", **kwargs}
    with pytest.raises(ValueError, match=message):
        select_for_review(kwargs.pop("ids"), kwargs.pop("confidences"), **kwargs)


def test_review_config_validates():
    with pytest.raises(ValueError, match="low_confidence"):
        ReviewConfig(low_confidence=2.0)
