"""The honest gate: a candidate must beat the trivial baseline of its own split by a margin."""

from __future__ import annotations

import math

import pytest

from pipelines.artifacts.baseline import last_value_baseline, majority_baseline, unigram_baseline
from pipelines.artifacts.gate import TRIVIAL_METRICS, evaluate_gate


def test_majority_baseline_is_the_best_constant_prediction():
    assert majority_baseline(["pos", "neg", "pos", "pos"]) == {"name": "majority class", "accuracy": 0.75,
                                                               "label": "pos", "n": 4}
    assert majority_baseline(["b", "a"])["label"] == "a"  # ties broken by name: deterministic
    with pytest.raises(ValueError, match="at least one"):
        majority_baseline([])


def test_unigram_baseline_perplexity_is_add_one_smoothed():
    out = unigram_baseline([[1, 1], [2]], vocab_size=3)
    # p(1) = 3/6, p(2) = 2/6: nll = -(2 ln 0.5 + ln 1/3) / 3
    assert out["tokens"] == 3
    assert out["perplexity"] == pytest.approx(math.exp(-(2 * math.log(0.5) + math.log(1 / 3)) / 3))


def test_last_value_baseline_mae():
    assert last_value_baseline([[1.0, 2.0], [3.0, 5.0]], [2.5, 4.0]) == {"name": "last value", "mae": 0.75, "n": 2}


def _gate(candidate, trivial, task, production=None, margin=None):
    metric, higher, default_margin = TRIVIAL_METRICS[task]
    return evaluate_gate(candidate=candidate, production=production, metric=metric, max_drop=0.05,
                         higher_is_better=higher, trivial=trivial, trivial_metric=metric,
                         trivial_higher_is_better=higher, margin=default_margin if margin is None else margin)


def test_first_model_at_chance_is_refused_with_the_numbers():
    decision = _gate({"accuracy": 0.54, "split": "s"}, {"name": "majority class", "accuracy": 0.533, "split": "s"},
                     "classification")
    assert not decision.passed
    assert decision.reason.startswith("refused: does not beat its trivial baseline: accuracy 0.54 vs majority "
                                      "class 0.533 + margin 0.02 = 0.553")
    assert (decision.trivial_metric, decision.trivial_value, decision.margin) == ("accuracy", 0.533, 0.02)


def test_margin_boundary_for_accuracy_and_perplexity():
    trivial = {"name": "majority class", "accuracy": 0.5}
    assert _gate({"accuracy": 0.52}, trivial, "classification").passed  # exactly the margin passes
    assert not _gate({"accuracy": 0.5199}, trivial, "classification").passed
    unigram = {"name": "unigram", "perplexity": 100.0}
    assert _gate({"perplexity": 95.0}, unigram, "causal_lm").passed  # 5 % lower exactly
    assert not _gate({"perplexity": 95.1}, unigram, "causal_lm").passed


def test_beating_the_baseline_then_compares_with_production():
    trivial = {"name": "majority class", "accuracy": 0.5}
    ok = _gate({"accuracy": 0.8, "accuracy_f": 1}, trivial, "classification", production={"accuracy": 0.81})
    assert ok.passed and ok.production_value == 0.81 and ok.trivial_value == 0.5
    worse = _gate({"accuracy": 0.7}, trivial, "classification", production={"accuracy": 0.9})
    assert not worse.passed and "vs production 0.9" in worse.reason


def test_baseline_on_another_split_or_missing_metric_is_refused():
    other = _gate({"accuracy": 0.9, "split": "a"}, {"accuracy": 0.5, "split": "b"}, "classification")
    assert not other.passed and "another split" in other.reason
    missing = _gate({"macro_f1": 0.9}, {"accuracy": 0.5}, "classification")
    assert not missing.passed and "no finite 'accuracy'" in missing.reason
