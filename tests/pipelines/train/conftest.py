"""Tiny seeded fixtures for the training tests: a separable toy text set, Q&A pairs, base models built once."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = "good great excellent fine happy nice lovely superb wonderful".split()
NEGATIVE = "bad awful terrible poor sad horrible nasty dreadful worst".split()
FILLER = "the a item product service it was is this".split()
QA = [("what are your opening hours?", "we are open from nine to five."),
      ("how do i reset my password?", "click forgot password on the login page."),
      ("where is my order?", "check the tracking link in your email."),
      ("can i get a refund?", "yes, within thirty days of purchase.")]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def toy_texts(n: int, seed: int = 0) -> list[dict]:
    """``n`` examples: two sentiment words of the label among three filler words (labels alternate)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        out.append({"id": f"t{i}", "text": " ".join(words), "label": label})
    return out


def toy_qa(n: int) -> list[dict]:
    return [{"id": f"q{i}", "question": QA[i % 4][0], "answer": QA[i % 4][1]} for i in range(n)]


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    """A tiny BERT classifier (labels neg, pos), random init, seed 0."""
    from pipelines.train.models import build_base_model

    folder = tmp_path_factory.mktemp("base") / "classifier"
    return build_base_model(task="classification", texts_or_series=[e["text"] for e in toy_texts(200)],
                            labels=["neg", "pos"], out_dir=folder, size="tiny", seed=0)


@pytest.fixture(scope="session")
def classifier_nodropout_dir(tmp_path_factory):
    """The same tiny BERT without dropout: a forward pass does not depend on the random state."""
    from pipelines.train.models import build_base_model

    folder = tmp_path_factory.mktemp("base") / "classifier0"
    return build_base_model(task="classification", texts_or_series=[e["text"] for e in toy_texts(200)],
                            labels=["neg", "pos"], out_dir=folder, size="tiny", seed=0, dropout=0.0)


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory):
    """A tiny Llama with a byte-level BPE tokenizer trained on the Q&A pairs."""
    from pipelines.train.models import build_base_model

    folder = tmp_path_factory.mktemp("base") / "lm"
    return build_base_model(task="causal_lm", texts_or_series=[f"{e['question']}\n{e['answer']}" for e in toy_qa(40)],
                            out_dir=folder, size="tiny", seed=0)


class _Toy:
    texts = staticmethod(toy_texts)
    qa = staticmethod(toy_qa)


@pytest.fixture(scope="session")
def toy():
    """``toy.texts(n)`` and ``toy.qa(n)``."""
    return _Toy
