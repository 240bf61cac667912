"""Book-keeping clipping as a training method: ``fit`` with ``grad_sample_mode="bk"`` against hooks mode.

Equivalence (noise 0: the same weights as Opacus' hooks mode, per-sample loss weights included), the
same epsilon for the same (q, sigma, steps), an outlier bounded by C through fit's own step, LoRA with
only the adapters hooked, and exact resume after SIGKILL (the helpers of ``test_resume.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_resume import assert_same_output, kill_at, spec_values, write_toy_split

from pipelines.config import ConfigError
from pipelines.train.config import TrainingConfig
from pipelines.train.session import prepare
from pipelines.train.spec import TrainError, TrainSpec
from pipelines.train.trainer import fit


def _fit(tmp_path: Path, name: str, model_dir: Path, train, held, **kw):
    from safetensors.torch import load_file

    values = dict(model_dir=str(model_dir), out_dir=str(tmp_path / name / "out"),
                  checkpoint_dir=str(tmp_path / name / "ck"), train_examples=train, eval_examples=held,
                  noise_multiplier=0.0, delta=1e-3, seed=0, epochs=1, learning_rate=1e-2)
    values.update(kw)
    result = fit(TrainSpec(**values), log=lambda line: None)
    return result, load_file(str(tmp_path / name / "out" / "model.safetensors"))


@pytest.mark.parametrize("task,method", [("classification", "full"), ("classification", "lora"),
                                         ("causal_lm", "full")])
def test_bk_without_noise_gives_the_weights_of_hooks(tmp_path, classifier_dir, lm_dir, toy, task, method):
    """Same Poisson batches, same dropout, same per-sample weighting (x1.5 on a term) and clipping: with
    noise 0 a few AdamW steps end at the same weights (float32 rounding apart)."""
    import torch
    from safetensors.torch import load_file

    if task == "classification":
        model_dir, examples, terms, size = classifier_dir, toy.texts(48, seed=2), ["superb"], 40
    else:
        model_dir, examples, terms, size = lm_dir, toy.qa(30), ["hours"], 24
    runs = {mode: _fit(tmp_path, mode, model_dir, examples[:size], examples[size:], batch_size=10 if size == 40 else 8,
                       grad_sample_mode=mode, method=method, max_grad_norm=0.5, weight_terms=terms)
            for mode in ("hooks", "bk")}
    (hooks, hooks_weights), (bk, bk_weights) = runs["hooks"], runs["bk"]
    assert bk.steps == hooks.steps == (4 if size == 40 else 3)
    assert bk.history[0]["epsilon"] == pytest.approx(hooks.history[0]["epsilon"], abs=1e-9)
    base = load_file(str(model_dir / "model.safetensors"))
    changed = [k for k in base if not torch.equal(bk_weights[k], base[k])]
    assert changed if method == "full" else all(".query." in k or ".value." in k or k.startswith("classifier.")
                                                for k in changed) and changed
    assert bk_weights.keys() == hooks_weights.keys()
    for key in bk_weights:
        torch.testing.assert_close(bk_weights[key], hooks_weights[key], rtol=0, atol=1e-5, msg=key)


def test_bk_trains_the_dplstm_forecaster_like_hooks(tmp_path):
    """Opacus' DPLSTM re-registers its cells' weights under aliases and calls them once per time step."""
    import torch

    from pipelines.train.models import build_base_model, make_sample_series, series_windows

    series = make_sample_series(0, 6, length=60)
    train, held = series_windows(series, window=10, eval_tail=6)
    base = build_base_model(task="forecast", texts_or_series=series, out_dir=tmp_path / "base", seed=0)
    (hooks, hooks_weights), (bk, bk_weights) = (
        _fit(tmp_path, mode, base, train, held, batch_size=50, grad_sample_mode=mode) for mode in ("hooks", "bk"))
    assert bk.steps == hooks.steps == 6 and bk.metrics["n"] == 36
    assert sorted(bk_weights) == sorted(hooks_weights) and "lstm.weight_ih_l0" in bk_weights
    for key in bk_weights:
        torch.testing.assert_close(bk_weights[key], hooks_weights[key], rtol=0, atol=1e-5, msg=key)


def test_bk_lora_hooks_only_the_trainable_layers(tmp_path, classifier_dir, toy):
    examples = toy.texts(20)
    session = prepare(TrainSpec(model_dir=str(classifier_dir), out_dir=str(tmp_path / "o"),
                                checkpoint_dir=str(tmp_path / "c"), train_examples=examples[:16],
                                eval_examples=examples[16:], noise_multiplier=1.0, grad_sample_mode="bk",
                                method="lora", lora_r=2), log=lambda line: None)
    hooked = [layer.name for layer in session.clipper.layers]
    # tiny BERT: 2 layers x (query, value) x (lora_A, lora_B) + the classifier head
    assert len(hooked) == 9 and hooked[-1].endswith("classifier")
    assert sorted(name.split(".")[-2] for name in hooked[:-1]) == ["lora_A"] * 4 + ["lora_B"] * 4
    assert all(".query." in name or ".value." in name for name in hooked[:-1])
    assert {id(p) for p in session.clipper.params} == {id(p) for p in session.module.parameters() if p.requires_grad}


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_bk_reports_the_epsilon_of_hooks(tmp_path, classifier_nodropout_dir, toy, accountant):
    examples = toy.texts(48, seed=2)
    results = {mode: _fit(tmp_path, mode, classifier_nodropout_dir, examples[:40], examples[40:], epochs=2,
                          batch_size=10, noise_multiplier=0.9, accountant=accountant, grad_sample_mode=mode,
                          log_every=8)[0]
               for mode in ("hooks", "bk")}
    hooks, bk = results["hooks"], results["bk"]
    assert (bk.steps, bk.sample_rate, bk.noise_multiplier) == (hooks.steps, hooks.sample_rate, 0.9) == (8, 0.25, 0.9)
    assert bk.epsilon == hooks.epsilon > 0
    assert [h["epsilon"] for h in bk.history] == [h["epsilon"] for h in hooks.history]


def test_bk_calibrates_sigma_and_steps_the_accountant_like_opacus(tmp_path, classifier_nodropout_dir, toy):
    """``target_epsilon`` gives the sigma Opacus' make_private_with_epsilon gives, and every step (empty Poisson
    batches included) appends (sigma, q) to the accountant's history as Opacus' optimizer hook does."""
    examples = toy.texts(20)
    sessions = {mode: prepare(TrainSpec(model_dir=str(classifier_nodropout_dir), out_dir=str(tmp_path / mode / "o"),
                                        checkpoint_dir=str(tmp_path / mode / "c"), train_examples=examples[:16],
                                        eval_examples=examples[16:], target_epsilon=3.0, delta=1e-3, epochs=2,
                                        batch_size=4, grad_sample_mode=mode), log=lambda line: None)
                for mode in ("hooks", "bk")}
    hooks, bk = sessions["hooks"], sessions["bk"]
    assert bk.noise_multiplier == hooks.noise_multiplier > 0 and bk.sample_rate == hooks.sample_rate == 0.25
    for session in (hooks, bk):
        session.train_step([])
        session.train_step(session.batch(examples[:3]))
    assert bk.engine.accountant.history == hooks.engine.accountant.history == [(hooks.noise_multiplier, 0.25, 2)]
    assert bk.epsilon() == hooks.epsilon()


def test_outlier_influence_is_bounded_by_c_through_fit(tmp_path, classifier_nodropout_dir, toy):
    """Two runs of fit() whose data differ in one example: loss weight 1000 (an outlier) or 0 (no influence).
    With q = 1 and noise 0 the first step's noisy clipped sum differs by that example's clipped gradient:
    at most C, and close to C (it was clipped, not dropped). Without clipping it moves the sum far more."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    examples = toy.texts(12)
    outlier = {"id": "x", "text": "good great the item this", "label": "neg"}
    captured: dict[str, list] = {}

    def capture(optimizer, args, kwargs):
        captured.setdefault(name, []).append(torch.cat([p.grad.detach().flatten() for group in optimizer.param_groups
                                                        for p in group["params"]]))

    handle = register_optimizer_step_pre_hook(capture)
    try:
        for clip in (0.5, 1e6):
            for weight in (1000.0, 0.0):
                name = f"{clip}-{weight}"
                train = examples[:8] + [{**outlier, "weight": weight}]
                result, _ = _fit(tmp_path, name, classifier_nodropout_dir, train, examples[8:], batch_size=len(train),
                                 grad_sample_mode="bk", max_grad_norm=clip)
                assert (result.sample_rate, result.steps) == (1.0, 1)
    finally:
        handle.remove()
    n = 9  # expected batch size: the optimizer sees (clipped sum + noise) / n
    bounded = float((captured["0.5-1000.0"][0] - captured["0.5-0.0"][0]).norm()) * n
    assert 0.45 < bounded <= 0.5 + 1e-4
    raw = float((captured["1000000.0-1000.0"][0] - captured["1000000.0-0.0"][0]).norm()) * n
    assert raw > 20 * 0.5


def test_bk_sigkill_then_resume_equals_uninterrupted(tmp_path, classifier_dir, toy):
    write_toy_split(tmp_path, toy)
    values = spec_values(tmp_path, classifier_dir, "killed", grad_sample_mode="bk", epochs=2)
    # 10 steps per epoch: step 13 is in epoch 2, after the epoch-1 checkpoint.
    kill_at(tmp_path, values, "[train] epoch=2 step=13 ")
    lines = []
    resumed = fit(TrainSpec.from_dict(values), log=lines.append)
    assert any("resumed from" in line and "epoch=1 step=10" in line for line in lines)
    assert any("mode=bk" in line for line in lines)
    straight = fit(TrainSpec.from_dict(spec_values(tmp_path, classifier_dir, "straight", grad_sample_mode="bk",
                                                   epochs=2)), log=lambda line: None)
    assert resumed.steps == straight.steps == 20 and resumed.epsilon > 0
    assert_same_output(resumed, straight)
    # bk and hooks are different runs: a hooks spec must not continue from a bk checkpoint.
    with pytest.raises(TrainError, match="different run"):
        fit(TrainSpec.from_dict({**values, "grad_sample_mode": "hooks"}), log=lambda line: None)


def test_bk_mode_settings_are_checked():
    assert TrainingConfig(grad_sample_mode="bk").grad_sample_mode == "bk"
    with pytest.raises(ConfigError, match="grad_sample_mode=bk .* secure_mode"):
        TrainingConfig(grad_sample_mode="bk", secure_mode=True)
    with pytest.raises(TrainError, match="secure_mode .* grad_sample_mode=bk"):
        TrainSpec(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl", noise_multiplier=1.0,
                  grad_sample_mode="bk", secure_mode=True)
