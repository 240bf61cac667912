"""DP training: per-sample clipping bound, quality floors, LoRA, ghost and bk modes, spec checks."""

from __future__ import annotations

import json

import pytest

from pipelines.modeling import load_model
from pipelines.train.models import make_sample_series, series_windows
from pipelines.train.session import prepare
from pipelines.train.spec import TrainError, TrainSpec
from pipelines.train.trainer import fit


def _spec(tmp_path, model_dir, train, held, **kw):
    values = dict(model_dir=str(model_dir), out_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ck"),
                  train_examples=train, eval_examples=held, noise_multiplier=0.8, delta=1e-3, seed=0)
    values.update(kw)
    return TrainSpec(**values)


@pytest.mark.parametrize("mode", ["hooks", "bk"])
def test_outlier_contribution_is_clipped_to_max_grad_norm(tmp_path, classifier_nodropout_dir, toy, mode):
    """Through the real step (forward, weighted loss, backward, DPOptimizer.pre_step or the book-keeping
    clipper) with noise 0: adding an outlier (loss weight 1000) to a batch moves the summed clipped gradient
    by at most C."""
    examples = toy.texts(8)
    outlier = {"id": "x", "text": "good great the item this", "label": "neg", "weight": 1000.0}
    base_batch, with_outlier = examples[:4], examples[:4] + [outlier]
    spec = _spec(tmp_path, classifier_nodropout_dir, examples, examples[4:], noise_multiplier=0.0, max_grad_norm=0.5,
                 grad_sample_mode=mode)
    session = prepare(spec, log=lambda line: None)
    diff = session.clipped_gradient_sum(session.batch(with_outlier)) - session.clipped_gradient_sum(
        session.batch(base_batch))
    assert float(diff.norm()) <= 0.5 + 1e-4
    assert float(diff.norm()) > 0.4  # the outlier's gradient was clipped to C, not dropped
    # Without effective clipping the same outlier moves the sum by far more than C: the bound above is clipping.
    loose = prepare(_spec(tmp_path, classifier_nodropout_dir, examples, examples[4:], noise_multiplier=0.0,
                          max_grad_norm=1e6, grad_sample_mode=mode), log=lambda line: None)
    raw = loose.clipped_gradient_sum(loose.batch(with_outlier)) - loose.clipped_gradient_sum(loose.batch(base_batch))
    assert float(raw.norm()) > 20 * 0.5


def test_classifier_learns_a_separable_set_under_dp(tmp_path, classifier_dir, toy):
    examples = toy.texts(440, seed=1)
    lines = []
    result = fit(_spec(tmp_path, classifier_dir, examples[:400], examples[400:], epochs=6, batch_size=40,
                       learning_rate=5e-2, min_learning_rate=1e-6), log=lines.append)
    # Chance is 0.5. The seeded run reaches 0.80 on the CPU; a GPU draws its noise from another generator (0.675 on
    # an H200), so its floor is lower, still well above chance.
    import torch

    assert result.metrics["accuracy"] >= (0.65 if torch.cuda.is_available() else 0.75)
    assert (result.steps, result.sample_rate, result.noise_multiplier) == (60, 0.1, 0.8)
    assert 0 < result.epsilon < 10 and result.delta == 1e-3
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.history[-1]["lr"] == pytest.approx(1e-6)
    assert [h["epsilon"] for h in result.history] == sorted(h["epsilon"] for h in result.history)
    best = max(result.history, key=lambda h: (h["macro_f1"], -h["epoch"]))
    assert result.best_epoch == best["epoch"] and result.metrics["macro_f1"] == best["macro_f1"]
    assert any(line.startswith("[train] epoch=1 step=1 lr=") and " eps=" in line for line in lines)
    saved = json.loads((tmp_path / "out" / "history.json").read_text())
    assert saved["steps"] == 60 and len(saved["history"]) == 6
    loaded = load_model(tmp_path / "out")
    assert loaded.config["trained"]["dp"]["noise_multiplier"] == 0.8
    assert loaded.predict(["great superb the item this"])[0][0] == "pos"


def test_causal_lm_perplexity_decreases(tmp_path, lm_dir, toy):
    examples = toy.qa(100)
    spec = _spec(tmp_path, lm_dir, examples[:80], examples[80:], epochs=2, batch_size=20, learning_rate=1e-2,
                 noise_multiplier=0.5)
    before = prepare(spec, log=lambda line: None).evaluate()
    result = fit(spec, log=lambda line: None)
    assert result.metrics["perplexity"] < 0.8 * before["perplexity"]
    assert result.metrics["tokens"] == before["tokens"] > 0  # answer tokens only, same held-out set


def test_forecaster_is_reported_against_the_naive_baseline(tmp_path):
    from pipelines.train.models import build_base_model

    series = make_sample_series(0, 6, length=60)
    train, held = series_windows(series, window=10, eval_tail=6)
    base = build_base_model(task="forecast", texts_or_series=series, out_dir=tmp_path / "base", seed=0)
    result = fit(_spec(tmp_path, base, train, held, epochs=2, batch_size=50, learning_rate=1e-2),
                 log=lambda line: None)
    assert result.metrics["metric"] == "mae" and result.metrics["n"] == 36
    assert result.metrics["naive_mae"] > 0
    assert result.metrics["mae_vs_naive"] == pytest.approx(result.metrics["mae"] / result.metrics["naive_mae"],
                                                           abs=1e-3)
    assert result.metrics["mae_vs_naive"] < 1.5
    assert len(load_model(tmp_path / "out").forecast([held[0]["window"]])) == 1


def test_lora_with_dp_saves_a_merged_loadable_model(tmp_path, classifier_dir, toy):
    from safetensors.torch import load_file

    examples = toy.texts(60)
    result = fit(_spec(tmp_path, classifier_dir, examples[:50], examples[50:], epochs=1, batch_size=25,
                       method="lora", lora_r=4), log=lambda line: None)
    assert result.steps == 2
    before, after = load_file(str(classifier_dir / "model.safetensors")), load_file(str(tmp_path / "out" /
                                                                                         "model.safetensors"))
    assert before.keys() == after.keys()  # adapters merged: a plain BERT folder
    changed = sorted(k for k in before if not (before[k] == after[k]).all())
    assert changed and all(".query.weight" in k or ".value.weight" in k or k.startswith("classifier.")
                           for k in changed)
    assert load_model(tmp_path / "out").predict(["good"])[0][0] in ("neg", "pos")


def test_ghost_clipping_matches_hooks(tmp_path, lm_dir, toy):
    from safetensors.torch import load_file

    examples = toy.qa(30)
    for mode in ("hooks", "ghost"):
        fit(_spec(tmp_path / mode, lm_dir, examples[:24], examples[24:], epochs=1, batch_size=8,
                  grad_sample_mode=mode, learning_rate=1e-2), log=lambda line: None)
    hooks, ghost = (load_file(str(tmp_path / m / "out" / "model.safetensors")) for m in ("hooks", "ghost"))
    base = load_file(str(lm_dir / "model.safetensors"))
    assert any(not (hooks[k] == base[k]).all() for k in base)
    assert all((hooks[k] - ghost[k]).abs().max() < 1e-4 for k in hooks)


def test_spec_mistakes_are_reported(tmp_path):
    with pytest.raises(TrainError, match="exactly one of noise_multiplier"):
        TrainSpec(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl")
    with pytest.raises(TrainError, match="grad_sample_mode='fast'"):
        TrainSpec(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl", noise_multiplier=1.0,
                  grad_sample_mode="fast")
    with pytest.raises(TrainError, match=r"unknown spec key\(s\) \['epoch'\]"):
        TrainSpec.from_dict({"model_dir": "m", "out_dir": "o", "checkpoint_dir": "c", "epoch": 3})
    spec = TrainSpec(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl", target_epsilon=3.0)
    assert TrainSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("mode", ["hooks", "ghost", "bk"])
def test_empty_poisson_batch_still_adds_noise_and_counts(tmp_path, classifier_dir, toy, mode):
    import torch

    examples = toy.texts(20)
    session = prepare(_spec(tmp_path, classifier_dir, examples[:16], examples[16:], batch_size=4,
                            grad_sample_mode=mode), log=lambda line: None)
    before = [p.detach().clone() for p in session.module.parameters()]
    assert session.train_step([]) == 0.0
    assert session.step == 1 and session.engine.accountant.history == [(0.8, 0.25, 1)]
    assert all(not torch.equal(a, p) for a, p in zip(before, session.module.parameters()))  # noise moved every weight
    assert session.train_step(session.batch(examples[:3])) > 0 and session.step == 2


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_a_run_without_noise_reports_infinite_epsilon(tmp_path, classifier_nodropout_dir, toy, accountant):
    """noise_multiplier=0 gives no guarantee: ε is inf by design (Opacus' PRV accountant raised OverflowError)."""
    import math

    examples = toy.texts(12)
    result = fit(_spec(tmp_path, classifier_nodropout_dir, examples[:8], examples[8:], noise_multiplier=0.0,
                       accountant=accountant, epochs=1, batch_size=4), log=lambda line: None)
    assert result.steps == 2 and result.epsilon == math.inf
    assert [entry["epsilon"] for entry in result.history] == [math.inf]


def test_no_training_loss_is_logged_or_recorded(tmp_path, classifier_nodropout_dir, toy):
    """The batch losses are statistics of private records without noise: neither logs nor history carry them."""
    examples = toy.texts(12)
    lines = []
    result = fit(_spec(tmp_path, classifier_nodropout_dir, examples[:8], examples[8:], epochs=2, batch_size=4),
                 log=lines.append)
    assert lines and all("loss=" not in line for line in lines)
    assert all(not any("loss" in key for key in entry) for entry in result.history)
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert all(not any("loss" in key for key in entry) for entry in history["history"])
