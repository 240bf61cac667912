"""The trivial baseline of an evaluation set, computed the way the gate compares it, and the set's digest."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from pipelines.train.evaluate import evaluate_model, evaluation_digest, trivial_baseline


def test_classification_trivial_baseline_is_the_sets_majority_label(classifier_dir, toy):
    examples = toy.texts(7)  # labels alternate neg, pos, ...: 4 neg, 3 pos
    assert trivial_baseline(classifier_dir, examples, max_length=16) == {
        "name": "majority class", "accuracy": round(4 / 7, 6), "label": "neg", "n": 7}


def test_causal_lm_trivial_baseline_scores_the_answer_tokens_the_model_is_scored_on(lm_dir, toy):
    from pipelines.modeling import EOS, load_model

    examples = toy.qa(6)
    trivial = trivial_baseline(lm_dir, examples, max_length=48)
    model = evaluate_model(lm_dir, examples, max_length=48, device="cpu")
    assert trivial["tokens"] == model["tokens"]  # the same tokens as the model's perplexity
    tokenizer = load_model(lm_dir).tokenizer
    eos = tokenizer.convert_tokens_to_ids(EOS)
    counts = Counter(t for e in examples for t in [*tokenizer(e["answer"], add_special_tokens=False)["input_ids"], eos])
    total, vocab = sum(counts.values()), len(tokenizer)
    assert total == trivial["tokens"]
    nll = -sum(c * math.log((c + 1) / (total + vocab)) for c in counts.values()) / total
    assert trivial["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)


def test_forecast_trivial_baseline_is_the_last_value(tmp_path):
    from pipelines.train.models import build_base_model, make_sample_series

    series = make_sample_series(3, 4, length=40)
    folder = build_base_model(task="forecast", texts_or_series=series, out_dir=tmp_path / "f", seed=1)
    examples = [{"id": "a", "window": [1.0, 2.0, 4.0], "target": 5.0},
                {"id": "b", "window": [3.0, 3.0, 2.0], "target": 1.0}]
    assert trivial_baseline(folder, examples, max_length=1) == {"name": "last value", "mae": 1.0, "n": 2}


def test_the_evaluation_digest_names_the_exact_set():
    a = [{"id": "1", "text": "x", "label": "p"}]
    assert evaluation_digest(a) == evaluation_digest([dict(a[0])])
    assert evaluation_digest(a) != evaluation_digest([{**a[0], "label": "n"}])
    assert evaluation_digest(a).startswith("sha256:") and len(evaluation_digest(a)) == 23
