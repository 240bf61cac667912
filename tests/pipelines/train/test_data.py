"""Curated rows to examples, the content-hash split, label checks, lexicon weights, JSONL."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.train.data import (
    DataError,
    causal_lm_examples,
    check_labels,
    classification_examples,
    is_held_out,
    read_jsonl,
    split_by_hash,
    term_weights,
    write_jsonl,
)


def _row(i, **kw):
    text = kw.get("text", f"text {i}")
    base = {"id": f"r{i}", "domain": "legal", "text": text, "label": None, "usage": "train",
            "content_sha256": hashlib.sha256(text.encode()).hexdigest(), "question": None, "answer": None}
    return {**base, **kw}


def test_classification_rows_need_train_usage_and_a_label():
    rows = [_row(1, label="contract"), _row(2), _row(3, label="tort", usage="review"), _row(4, label="tort"),
            _row(5, label="")]
    assert [e["id"] for e in classification_examples(rows)] == ["r1", "r4"]
    assert classification_examples(rows)[0] == {"id": "r1", "content_sha256": rows[0]["content_sha256"],
                                                "text": "text 1", "label": "contract"}


def test_causal_rows_need_question_and_answer_and_train_usage():
    rows = [_row(1, question="q?", answer="a."), _row(2, question="q?"), _row(3, question="q?", answer="a.",
                                                                           usage="hold"),
            _row(4, question="q2?", answer="a2.", rating=5)]
    assert [(e["id"], e["question"], e["answer"]) for e in causal_lm_examples(rows)] == [
        ("r1", "q?", "a."), ("r4", "q2?", "a2.")]


def test_split_is_by_content_hash_and_stable():
    rows = [{"id": f"e{i}", "content_sha256": f"{i * 7919 % 2 ** 32:08x}" + "0" * 56} for i in range(200)]
    train, held = split_by_hash(rows, eval_percent=10)
    expected = [r["id"] for r in rows if int(r["content_sha256"][:8], 16) % 100 < 10]
    assert [r["id"] for r in held] == expected
    assert len(held) + len(train) == 200
    # A record's side does not depend on which other records are in the batch.
    _, held_half = split_by_hash(rows[::2], eval_percent=10)
    assert [r["id"] for r in held_half] == [i for i in expected if int(i[1:]) % 2 == 0]
    assert is_held_out("00000009" + "0" * 56, 10) and not is_held_out("0000000a" + "0" * 56, 10)
    with pytest.raises(DataError, match="eval_percent"):
        split_by_hash(rows, eval_percent=100)


def test_unseen_labels_are_an_error_naming_them():
    with pytest.raises(DataError, match=r"\{'fraud': 2\} .*not in the model's labels \['contract', 'tort'\]"):
        check_labels([{"label": "fraud"}, {"label": "tort"}, {"label": "fraud"}], ["contract", "tort"])
    check_labels([{"label": "tort"}], ["contract", "tort"])


def test_term_weights_whole_words_and_cjk():
    texts = ["The Plaintiff filed a motion", "a matter of fact", "the act was passed", "合同违约责任", "nothing"]
    assert term_weights(texts, terms=["plaintiff", "act", "违约"], factor=1.5) == [1.5, 1.0, 1.5, 1.5, 1.0]
    assert term_weights(texts, terms=[], factor=1.5) == [1.0] * 5
    with pytest.raises(DataError, match="positive"):
        term_weights(texts, terms=["act"], factor=0)


def test_jsonl_round_trip_and_errors(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"a": 1, "t": "中文"}, {"a": 2}])
    assert read_jsonl(path) == [{"a": 1, "t": "中文"}, {"a": 2}]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n[1]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a JSON object"):
        read_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")
