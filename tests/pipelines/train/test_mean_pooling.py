"""``pooling: mean`` model folders: load, save and reload round-trip; ``head`` trains the linear layer alone under DP."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.modeling import DESCRIPTOR, load_model, save_model, text_inputs
from pipelines.train.trainer import TrainSpec, fit, prepare


@pytest.fixture()
def mean_dir(tmp_path, classifier_nodropout_dir):
    """The tiny no-dropout classifier with ``"pooling": "mean"`` in its descriptor (its pooler weights unused)."""
    folder = tmp_path / "mean"
    shutil.copytree(classifier_nodropout_dir, folder)
    descriptor = json.loads((folder / DESCRIPTOR).read_text(encoding="utf-8"))
    (folder / DESCRIPTOR).write_text(json.dumps({**descriptor, "pooling": "mean"}), encoding="utf-8")
    return folder


def _logits(loaded, texts):
    import torch

    enc = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**text_inputs(enc["input_ids"], enc["attention_mask"], task="classification")).logits, enc


def test_mean_pooling_folder_round_trips_and_pools_the_masked_mean(tmp_path, mean_dir, toy):
    import torch
    from safetensors.torch import load_file

    texts = [e["text"] for e in toy.texts(4)] + ["good"]
    loaded = load_model(mean_dir)
    assert loaded.model.bert.pooler is None
    logits, enc = _logits(loaded, texts)
    with torch.no_grad():
        states = loaded.model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        expected = loaded.model.classifier((states * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(logits, expected)  # padding does not enter the mean ("good" is the short one)

    out = save_model(loaded, loaded.model, tmp_path / "saved")
    assert json.loads((out / DESCRIPTOR).read_text(encoding="utf-8"))["pooling"] == "mean"
    assert not any(name.startswith("bert.pooler.") for name in load_file(str(out / "model.safetensors")))
    again = load_model(out)
    torch.testing.assert_close(_logits(again, texts)[0], logits)
    assert again.predict(texts[:1])[0][0] in ("neg", "pos")
    # A folder without the key keeps the [CLS] pooler (older folders load as before).
    plain = json.loads((mean_dir / DESCRIPTOR).read_text(encoding="utf-8"))
    plain.pop("pooling")
    (mean_dir / DESCRIPTOR).write_text(json.dumps(plain), encoding="utf-8")
    assert load_model(mean_dir).model.bert.pooler is not None


def test_mean_pooling_head_trains_the_classifier_alone_and_learns_under_dp(tmp_path, mean_dir, toy):
    """Seeded floor: a random-init tiny encoder's mean-pooled states separate the toy words (eps 8)."""
    examples = toy.texts(500, seed=1)
    train, held = examples[:400], examples[400:]
    kwargs = dict(model_dir=str(mean_dir), train_examples=tuple(train), eval_examples=tuple(held), delta=1e-5,
                  grad_sample_mode="bk", method="head", batch_size=32, learning_rate=0.05, epochs=4, warmup_steps=5,
                  max_length=16, seed=0, device="cpu")
    session = prepare(TrainSpec(out_dir=str(tmp_path / "o0"), checkpoint_dir=str(tmp_path / "c0"),
                                target_epsilon=8.0, **kwargs), log=lambda line: None)
    assert {n for n, p in session.module.named_parameters() if p.requires_grad} == {"classifier.weight",
                                                                                     "classifier.bias"}
    result = fit(TrainSpec(out_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ck"), target_epsilon=8.0,
                           **kwargs), log=lambda line: None)
    assert result.epsilon <= 8.0 + 1e-6
    assert result.history[-1]["accuracy"] >= 0.5 + 0.15, result.history
    assert load_model(tmp_path / "out").config["pooling"] == "mean"
