"""Base models from public pretraining, recipes as config defaults, and the plan's small-data warning."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.config.training import TrainingConfig
from pipelines.finetune.base import build_base_folder, evaluation_texts, pretraining_summary
from pipelines.finetune.handover import StartModel, TrainPlan
from pipelines.modeling import load_model, read_descriptor
from pipelines.pretrain import corpora
from pipelines.pretrain.causal_lm import public_dialogues
from pipelines.train.config import spec_from_config
from pipelines.train.recipes import budget_warnings

PATHS = dict(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl", eval_path="e.jsonl",
             noise_multiplier=1.0, delta=1e-5)


@pytest.mark.parametrize("method", ["head", "head_bias", "last_layer", "lora", "full"])
def test_training_config_accepts_the_recipe_methods(method):
    assert TrainingConfig(method=method, base="public-pretrained").method == method


def test_training_config_names_what_it_accepts():
    with pytest.raises(ConfigError, match=r"training.method='bias': use one of full, lora, head, head_bias, last_layer"):
        TrainingConfig(method="bias")
    with pytest.raises(ConfigError, match=r"training.base='bert': use one of scratch, minilm, public-pretrained"):
        TrainingConfig(base="bert")
    with pytest.raises(ConfigError, match=r"warmup_fraction=1.0"):
        TrainingConfig(warmup_fraction=1.0)


def test_warmup_fraction_is_a_share_of_the_planned_steps_weekly_and_monthly():
    cfg = TrainingConfig(warmup_fraction=0.1, learning_rate=5e-3, monthly_learning_rate=5e-3)
    weekly = spec_from_config(cfg, steps=70, **PATHS)
    monthly = spec_from_config(cfg, kind="monthly", steps=25, **PATHS)
    assert (weekly.warmup_steps, monthly.warmup_steps) == (7, 2)
    assert (weekly.learning_rate, monthly.learning_rate) == (5e-3, 5e-3)
    assert spec_from_config(cfg, steps=3, **PATHS).warmup_steps == 1  # at least one step
    with pytest.raises(ConfigError, match="warmup_fraction needs the run's planned steps"):
        spec_from_config(cfg, **PATHS)
    assert spec_from_config(TrainingConfig(warmup_steps=4), **PATHS).warmup_steps == 4


def test_shipped_config_warms_up_every_monthly_retrain_and_trains_few_parameters_of_public_bases(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("PIPELINE__TRAINING__")]:
        monkeypatch.delenv(key)
    config = load_config()
    settings = {d: config.for_domain(d).training for d in config.domains}
    for domain, cfg in settings.items():
        monthly = spec_from_config(cfg, kind="monthly", steps=50, **PATHS)
        assert monthly.warmup_steps >= 5, domain
        assert monthly.learning_rate <= cfg.learning_rate, domain
    assert (settings["product_reviews"].base, settings["product_reviews"].method) == ("public-pretrained",
                                                                                       "head_bias")
    assert {settings[d].base for d in ("legal", "medical", "finance")} == {"minilm"}
    assert (settings["customer_service"].base, settings["customer_service"].method) == ("scratch", "lora")
    forecaster = settings["finance"].for_forecaster()
    assert (forecaster.method, forecaster.base, forecaster.epochs) == ("full", "scratch", settings["finance"].epochs)


def test_budget_warnings_say_when_n_times_epsilon_is_below_the_benchmark():
    (line,) = budget_warnings(n_train=2000, epsilon=1.6, min_n_epsilon=13000, method="head_bias",
                              base="public-pretrained")
    assert line.startswith("data too small for the budget: 2000 training examples x epsilon 1.6 = 3,200 < 13,000, ")
    assert budget_warnings(n_train=9000, epsilon=1.6, min_n_epsilon=13000, method="head_bias", base="x") == ()
    assert budget_warnings(n_train=10, epsilon=0.1, min_n_epsilon=0, method="head", base="minilm") == ()


def test_plan_warnings_round_trip():
    plan = TrainPlan(domain="legal", kind="weekly", task="classification", run_id="r", dry_run=True,
                     requested_by="t", partitions=(), train_examples=10, eval_examples=2,
                     start=StartModel(artifact_id="a", version="0.0", root="r", source="base"), sample_rate=0.5,
                     steps=4, noise_multiplier=1.0, epsilon=0.5, delta=1e-5, accountant="rdp", max_grad_norm=1.0,
                     warnings=("data too small",))
    values = json.loads(json.dumps(plan.to_dict()))
    assert values["warnings"] == ["data too small"]
    assert TrainPlan.from_dict(values) == plan
    assert "warnings" not in dataclasses.replace(plan, warnings=()).to_dict()


@pytest.mark.slow
def test_causal_lm_base_is_pretrained_on_public_dialogues_without_the_domains_records(tmp_path):
    everything = corpora.chatterbot_topics("english")  # first pairs: what the sample's records are made of
    records = [text for text, _topic in everything[:200]]
    folder = build_base_folder(task="causal_lm", training=TrainingConfig(max_length=48), records=records, labels=[],
                               out_dir=tmp_path / "lm", size="tiny", seed=3)
    pretraining = read_descriptor(folder)["pretraining"]
    assert pretraining["private_data"] is False and pretraining["recipe"] == "causal-lm-answers/1"
    (corpus,) = pretraining["corpora"]
    assert corpus["package"] == "chatterbot-corpus" and corpus["files"][0].startswith("data/english/")
    kept = public_dialogues(exclude_texts=records)
    assert corpus["n_pairs"] == len(kept.pairs) == len(public_dialogues().pairs) - len(set(records))
    assert not {corpora.normalize(f"{q}\n{a}") for q, a in kept.pairs} & {corpora.normalize(r) for r in records}
    assert pretraining["steps"] > 0 and pretraining["final_answer_loss"] > 0
    loaded = load_model(folder)
    assert isinstance(loaded.generate("What is AI?", max_new_tokens=4), str)
    assert pretraining_summary(folder) == {"pretraining": pretraining}


@pytest.mark.slow
def test_public_pretrained_classifier_base_excludes_the_domains_records(tmp_path, monkeypatch):
    small = corpora.people_daily(max_texts=400)
    records = list(small.texts[:50])
    monkeypatch.setattr(corpora, "public_chinese",
                        lambda *, exclude_texts=(): [dataclasses.replace(
                            small, texts=tuple(corpora.exclude(small.texts, exclude_texts)))])
    folder = build_base_folder(task="classification", training=TrainingConfig(base="public-pretrained", max_length=32),
                               records=records, labels=["negative", "positive"], out_dir=tmp_path / "zh",
                               size="tiny", seed=0)
    descriptor = read_descriptor(folder)
    assert descriptor["base"] == "public-pretrained" and descriptor["labels"] == ["negative", "positive"]
    (corpus,) = descriptor["pretraining"]["corpora"]
    assert (corpus["name"], corpus["n_texts"]) == ("people_daily", len(small.texts) - 50)
    assert load_model(folder).predict(["这款耳机音质很好"], max_length=32)[0][0] in ("negative", "positive")


def test_evaluation_texts_are_what_public_pretraining_leaves_out(tmp_path):
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "customer_service.jsonl").write_text(
        '{"id": "eval-0", "question": "How are you?", "answer": "Fine."}\n'
        '{"id": "eval-1", "text": "Shares rose.", "label": "markets"}\n\n', encoding="utf-8")
    assert evaluation_texts("customer_service", tmp_path) == ["How are you?\nFine.", "Shares rose."]
    assert evaluation_texts("legal", tmp_path) == []
