"""The public-text encoder: deterministic files, provenance in the descriptor, mean pooling that is order-free."""

from __future__ import annotations

import json

import pytest

from pipelines.pretrain import corpora
from pipelines.pretrain.encoder import build_public_encoder
from pipelines.modeling import load_model


@pytest.fixture(scope="module")
def tiny_corpus():
    return corpora.chatterbot("chinese")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_corpus):
    return _build(tmp_path_factory.mktemp("encoder"), tiny_corpus, "m")


def _build(tmp_path, corpus, name, seed=0):
    return build_public_encoder(corpora=[corpus], out_dir=tmp_path / name, labels=["negative", "positive"],
                                size="tiny", seed=seed, max_length=32)


def test_same_corpus_and_seed_give_identical_files(tmp_path, tiny_corpus, built):
    first, second = built, _build(tmp_path, tiny_corpus, "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_descriptor_records_what_the_base_was_trained_on(built, tiny_corpus):
    descriptor = json.loads((built / "pipeline_model.json").read_text(encoding="utf-8"))
    assert descriptor["base"] == "public-pretrained"
    assert descriptor["segment"] == "jieba"
    assert descriptor["pretraining"]["private_data"] is False
    assert descriptor["pretraining"]["corpora"] == [tiny_corpus.provenance()]
    assert descriptor["pretraining"]["corpora"][0]["package"] == "chatterbot-corpus"


def test_cls_is_a_mean_of_word_vectors_so_word_order_does_not_matter(built):
    import torch

    loaded = load_model(built)
    enc = loaded.tokenizer(["我 喜欢 电影", "电影 喜欢 我", "我 讨厌 电影"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = loaded.model(**enc).logits
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    assert not torch.allclose(logits[0], logits[2], atol=1e-5)


def test_refuses_a_non_empty_folder_and_a_single_label(tmp_path, tiny_corpus):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        _build(tmp_path, tiny_corpus, "full")
    with pytest.raises(ValueError, match="two distinct labels"):
        build_public_encoder(corpora=[tiny_corpus], out_dir=tmp_path / "one", labels=["a"], size="tiny")
