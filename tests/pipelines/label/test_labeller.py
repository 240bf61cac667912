"""Labellers: tiny seeded training, predictions with confidences, save/load equivalence, evaluation."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.label import LabellerConfig, evaluate, load_labeller, score, train_labeller, training_digest
from pipelines.label.data import distinct_labelled, sample_records, split_holdout

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[3]
TINY_ZH = LabellerConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=200, min_frequency=1,
                         max_length=16, batch_size=8, epochs=8, learning_rate=3e-3, dropout=0.0)
_POS = ["质量很好", "非常满意", "物流很快", "值得推荐", "服务周到", "包装精美", "性价比高", "很喜欢"]
_NEG = ["质量太差", "非常失望", "物流很慢", "不推荐", "服务很差", "包装破损", "太贵了", "退货了"]
_THINGS = ["这本书", "耳机", "衣服", "手机", "酒店", "键盘"]


def _reviews(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Synthetic two-phrase reviews; the label follows the phrases' polarity."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = _POS if label == "positive" else _NEG
        texts.append(f"{rng.choice(_THINGS)}{rng.choice(words)}，{rng.choice(words)}。")
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def zh_labeller():
    texts, labels = _reviews(160, seed=1)
    return train_labeller(texts=texts, labels=labels, language="zh", config=TINY_ZH, seed=3)


@pytest.fixture(scope="module")
def legal():
    data = distinct_labelled(sample_records("legal"))
    train, test = split_holdout(data, fraction=0.25, seed=5)
    train, _ = split_holdout(train, fraction=0.6, seed=5)  # ~120 texts: a few seconds of encoding
    return train, test


@pytest.fixture(scope="module")
def en_labeller(legal):
    train, _ = legal
    return train_labeller(texts=train.texts, labels=train.labels, language="en",
                          config=LabellerConfig(max_length=64), seed=0)


def test_chinese_tiny_bert_learns_and_reports_confidences(zh_labeller):
    texts, labels = _reviews(60, seed=2)
    result = evaluate(zh_labeller, texts, labels)
    assert result["n"] == 60 and result["accuracy"] >= 0.9, result
    predictions = zh_labeller.predict(texts)
    assert {label for label, _ in predictions} <= {"negative", "positive"}
    assert all(0.5 <= confidence <= 1.0 for _, confidence in predictions)
    assert zh_labeller.labels == ("negative", "positive")
    assert zh_labeller.version.startswith("zh-")


def test_chinese_training_is_reproducible(zh_labeller):
    texts, labels = _reviews(160, seed=1)
    again = train_labeller(texts=texts, labels=labels, language="zh", config=TINY_ZH, seed=3)
    probe = _reviews(20, seed=9)[0]
    assert again.version == zh_labeller.version
    assert again.predict(probe) == zh_labeller.predict(probe)


def test_chinese_save_load_round_trip(zh_labeller, tmp_path):
    zh_labeller.metrics = {"holdout": {"accuracy": 1.0}}
    zh_labeller.save(tmp_path / "zh")
    assert sorted(p.name for p in (tmp_path / "zh").iterdir()) == [
        "bert_config.json", "labeller.json", "model.safetensors", "tokenizer.json"]
    meta = json.loads((tmp_path / "zh" / "labeller.json").read_text())
    texts, labels = _reviews(160, seed=1)
    assert meta["training"]["data_sha256"] == training_digest(texts, labels)
    assert (meta["labels"], meta["version"], meta["metrics"]) == (
        ["negative", "positive"], zh_labeller.version, {"holdout": {"accuracy": 1.0}})
    assert meta["training"]["label_counts"] == {"negative": 80, "positive": 80}
    loaded = load_labeller(tmp_path / "zh")
    probe = _reviews(40, seed=4)[0] + ["", "完全没见过的词语组合"]
    assert loaded.predict(probe) == zh_labeller.predict(probe)
    small_batches = loaded.predict(probe, batch_size=3)  # other padding widths: equal up to float rounding
    assert [label for label, _ in small_batches] == [label for label, _ in loaded.predict(probe)]
    assert [c for _, c in small_batches] == pytest.approx([c for _, c in loaded.predict(probe)], abs=1e-5)


def test_english_minilm_head_learns_legal_labels(en_labeller, legal):
    _, test = legal
    result = evaluate(en_labeller, test.texts, test.labels)
    assert result["accuracy"] >= 0.9, result
    assert en_labeller.labels == ("contract", "criminal", "employment", "intellectual_property")


def test_english_save_load_round_trip(en_labeller, legal, tmp_path):
    _, test = legal
    en_labeller.save(tmp_path / "en")
    assert sorted(p.name for p in (tmp_path / "en").iterdir()) == ["head.safetensors", "labeller.json"]
    loaded = load_labeller(tmp_path / "en")
    assert loaded.version == en_labeller.version
    assert loaded.predict(test.texts[:30]) == en_labeller.predict(test.texts[:30])


def test_english_load_refuses_another_encoder(en_labeller, tmp_path):
    en_labeller.save(tmp_path / "en")
    meta_path = tmp_path / "en" / "labeller.json"
    meta = json.loads(meta_path.read_text())
    meta["backend"]["encoder"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="install the pinned version or retrain"):
        load_labeller(tmp_path / "en")


def test_load_refuses_a_folder_without_labeller_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved labeller folder"):
        load_labeller(tmp_path)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"language": "fr"}, ValueError, "language='fr': use one of"),
    ({"labels": ["a", "a"]}, ValueError, "at least two distinct labels"),
    ({"labels": ["a"]}, ValueError, "2 texts but 1 labels"),
    ({"texts": "one string"}, TypeError, "not one string"),
])
def test_train_labeller_fails_early(kwargs, error, message):
    args = {"texts": ["x", "y"], "labels": ["a", "b"], "language": "zh", "config": TINY_ZH, **kwargs}
    with pytest.raises(error, match=message):
        train_labeller(**args)


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 30, "num_heads": 4}, "divisible by num_heads"),
    ({"epochs": 0}, "epochs=0 must be a positive integer"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"dropout": 1.0}, "dropout"),
])
def test_config_validates(change, message):
    with pytest.raises(ValueError, match=message):
        replace(LabellerConfig(), **change)


def test_score_accuracy_and_macro_f1():
    result = score(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    # a: P=1 R=.5 F1=2/3; b: P=2/3 R=1 F1=.8 -> macro .7333
    assert result == {"accuracy": 0.75, "macro_f1": 0.7333, "n": 4}
    assert score([], []) == {"accuracy": 0.0, "macro_f1": 0.0, "n": 0}


def test_predict_on_nothing(zh_labeller):
    assert zh_labeller.predict([]) == []


def test_importing_the_packages_loads_no_torch():
    code = ("import sys, pipelines.label, pipelines.label.cli, pipelines.review, pipelines.review.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers', 'jieba', 'airflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_wordpiece_vocabulary_is_the_same_in_every_process():
    # tokenizers' own WordPieceTrainer broke count ties differently per process; ours must not.
    code = ("from pipelines.label.chinese import train_wordpiece\n"
            "texts = ['质量 很 好 ， 物流 很 快', '质量 太 差 ， 物流 很 慢', '很 好 很 好', 'ok good 好']\n"
            "print(train_wordpiece(texts, vocab_size=120, min_frequency=1).to_str())")
    outputs = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=hash_seed))
        assert out.returncode == 0, out.stderr[-2000:]
        outputs.add(out.stdout)
    assert len(outputs) == 1
    vocab = json.loads(outputs.pop())["model"]["vocab"]
    assert list(vocab)[:7] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "很", "好"]
    assert {"质量", "物流", "##量", "good"} <= set(vocab)
