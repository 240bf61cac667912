"""The output screen is a trained classifier (pipelines.label), measured on held-out texts."""

from __future__ import annotations

import pytest

from pipelines.serving.screening import WITHHELD, OutputScreen, screen_examples, train_output_screen


def test_screen_examples_keep_entries_and_texts_apart():
    data = screen_examples(n=400, seed=5)
    train, test, unseen = data["train"], data["test"], data["test_unseen"]
    assert (len(train[0]), len(test[0]), len(unseen[0])) == (640, 80, 80)
    assert train[1].count("unsafe") == 320 and test[1].count("safe") == 40
    assert not set(train[0]) & set(test[0])


@pytest.fixture(scope="module")
def screen():
    return train_output_screen(n=2000, seed=1)


def test_output_screen_withholds_unsafe_answers(screen):
    labeller, metrics = screen
    assert labeller.labels == ("safe", "unsafe")
    assert metrics["test"]["accuracy"] >= 0.85  # measured 0.896 (seed 1); unseen entries 0.68
    out = OutputScreen(labeller, block=("unsafe",), threshold=0.5).screen(
        ["您好，很高兴为您服务", "我们提供网络赌博服务", "the weather is nice today"])
    assert [r.withheld for r in out] == [False, True, False]
    assert out[1].text == WITHHELD and out[0].text == "您好，很高兴为您服务"
    with pytest.raises(ValueError, match="blocked labels \\['toxic'\\]"):
        OutputScreen(labeller, block=("toxic",), threshold=0.5)
