"""A domain's time-series forecaster: the model slot ``<domain>_forecast`` and the series it trains on.

A domain whose training block sets ``forecast: true`` (finance) gets a second model slot named
``<domain>_forecast``. The slot goes through the same path as the domain's own model
(``pipelines.finetune``: plan and budget reservation, Opacus DP training, artifact, gate, promotion), with:

- artifacts and promotions under ``models/<domain>_forecast/...``, base models under
  ``models/base/<domain>_forecast/``;
- ledger entries under ``privacy/ledger/<domain>_forecast/``, checked against the domain's own
  ``PrivacyConfig`` (``config.for_domain(domain).require_privacy()``): the same ε/δ budget per privacy unit. The
  forecaster's data (series) and the domain's curated records are disjoint, so the two ledgers compose
  in parallel and each is checked against the budget on its own;
- task ``forecast`` (``pipelines.train.models``: DPLSTM + attention), gated on ``mae`` (lower is better),
  reported beside ``naive_mae`` (the last value as the forecast).

**Data.** The partitions are the domain's committed curated intervals (the weeks); the data of a week
is the numeric series published with it. No market feed exists yet, so :func:`interval_series`
*generates* them deterministically per interval (``make_sample_series`` seeded by a hash of the
interval name): a stand-in with the shape of real data, replaced by reading the feed once it exists.

**Privacy unit: one series.** Opacus clips the gradient of each training *example*, so an example
must be a whole unit: every series gives exactly **one** training window (a window ending at a point
chosen per series from a hash of its id, before the held-out tail). Sliding every window of a series
into training would make one series many examples and the reported ε per window, not per series.
:func:`forecast_examples` also returns every window whose target lies in each series' last
``forecast_eval_tail`` points (a time split of the *same* series): that private split is never used for a
released number. Every published metric, the best epoch and the gate use generated *public* series
(:mod:`pipelines.finetune.evaluation`, a seed unrelated to any interval), so no series the model trained on is
in its evaluation and no metric is a statistic of private series.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.config import ConfigError, PipelineConfig
from pipelines.publish import latest_commit, list_partitions, partition_prefix
from pipelines.storage import ObjectStore
from pipelines.train.models import make_sample_series

SLOT_SUFFIX = "_forecast"
FORECAST_TASK = "forecast"


@dataclass(frozen=True)
class ModelSlot:
    """One trainable model: a domain's own model, or its forecaster.

    Attributes:
        name: what keys models, ledger entries and runs (``finance`` or ``finance_forecast``).
        domain: the configured domain whose config (training, privacy budget, gate) applies.
        task: ``classification``, ``causal_lm`` or ``forecast``.
    """

    name: str
    domain: str
    task: str

    def __post_init__(self) -> None:
        if not self.name or not self.domain:
            raise ConfigError("a model slot needs a name and a domain")

    @property
    def is_forecast(self) -> bool:
        """Whether this is a forecaster slot (its data are generated series, not curated rows)."""
        return self.task == FORECAST_TASK and self.name != self.domain


def _forecast_on(config: PipelineConfig, domain: str) -> bool:
    return config.for_domain(domain).training.forecast


def forecast_slots(*, config: PipelineConfig) -> list[str]:
    """Names of the forecaster slots, ``<domain>_forecast`` for each domain with ``training.forecast`` on."""
    return [f"{d}{SLOT_SUFFIX}" for d in sorted(config.domains) if _forecast_on(config, d)]


def model_slot(*, config: PipelineConfig, name: str) -> ModelSlot:
    """Resolve a domain or forecaster slot name.

    Args:
        config: the pipeline config.
        name: a configured domain (``finance``) or ``<domain>_forecast`` of a domain with forecast on.

    Returns:
        The slot; a configured domain's name always means the domain itself.

    Raises:
        ConfigError: neither a domain nor an enabled forecaster slot (the message lists both).
    """
    if name in config.domains:
        return ModelSlot(name=name, domain=name, task=config.domains[name].task)
    if name.endswith(SLOT_SUFFIX):
        domain = name[: -len(SLOT_SUFFIX)]
        if domain in config.domains:
            if not _forecast_on(config, domain):
                raise ConfigError(f"{name}: domain {domain} has no forecaster; set "
                                  f"domains.{domain}.training.forecast: true in config/pipeline.yaml")
            return ModelSlot(name=name, domain=domain, task=FORECAST_TASK)
    known = sorted(config.domains) + forecast_slots(config=config)
    raise ConfigError(f"unknown domain or model slot {name!r}; configured: {', '.join(known)}")


# ------------------------------------------------------------------------------------------ series
def series_seed(interval: str) -> int:
    """The generator seed of an interval's series: the first 60 bits of ``sha256(interval name)``."""
    return int(hashlib.sha256(interval.encode("utf-8")).hexdigest()[:15], 16)


def interval_series(interval: str, *, series: int, length: int) -> list[list[float]]:
    """The numeric series published with one curated interval.

    Until a real market feed exists these are **generated** (``make_sample_series`` seeded by
    :func:`series_seed` of the interval name): the same interval always gives the same series, and
    different intervals give different series (disjoint privacy units).

    Args:
        interval: the interval's canonical name (``2026-10-04_2026-10-11``).
        series: how many series.
        length: points per series.
    """
    return make_sample_series(series_seed(interval), series, length=length)


def series_digest(values: Sequence[Sequence[float]]) -> str:
    """``sha256`` of the series as canonical JSON (what the manifest records as the partition digest)."""
    return hashlib.sha256(json.dumps([list(map(float, s)) for s in values], separators=(",", ":")).encode()).hexdigest()


def forecast_partitions(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot,
                        only: set[str] | None = None) -> list[tuple[dict[str, Any], list[list[float]]]]:
    """``(partition info, series)`` of each committed curated interval of the slot's domain, oldest first.

    The info is ``{"interval", "version", "rows", "digest"}``: the curated version committed for the
    interval (the series are published with it), the number of series and their digest.
    """
    training = config.for_domain(slot.domain).training
    out = []
    for name in sorted(list_partitions(store, config.storage.curated_prefix, slot.domain)):
        if only is not None and name not in only:
            continue
        commit = latest_commit(store, partition_prefix(config.storage.curated_prefix, slot.domain, name))
        if commit is None:
            continue
        values = interval_series(name, series=training.forecast_series, length=training.forecast_length)
        out.append(({"interval": name, "version": commit.version, "rows": len(values),
                     "digest": series_digest(values)}, values))
    return out


def _train_end(series_id: str, *, window: int, cut: int) -> int:
    """The index of the one training target of a series: in ``[window, cut)``, fixed by a hash of its id."""
    span = cut - window
    return window + int(hashlib.sha256(series_id.encode("utf-8")).hexdigest()[:8], 16) % span


def forecast_examples(partitions: Sequence[tuple[dict[str, Any], Sequence[Sequence[float]]]], *, window: int,
                      eval_tail: int) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)`` examples ``{"id", "window", "target"}`` of the trainer's forecast task.

    Each series gives one training example (one privacy unit = one clipped gradient), its target
    before the last ``eval_tail`` points; every window whose target lies in that tail is held out.

    Args:
        partitions: ``(info with "interval", series)`` pairs (:func:`forecast_partitions`).
        window: points per input window.
        eval_tail: last points of each series held out.
    """
    train, held = [], []
    for info, values in partitions:
        for index, points in enumerate(values):
            series_id = f"{info['interval']}/s{index}"
            cut = len(points) - eval_tail
            if cut <= window:
                raise ConfigError(f"series {series_id} has {len(points)} points: need more than forecast_window + "
                                  f"forecast_eval_tail ({window} + {eval_tail})")
            end = _train_end(series_id, window=window, cut=cut)
            train.append({"id": f"{series_id}t{end}", "window": list(points[end - window:end]),
                          "target": points[end]})
            for end in range(cut, len(points)):
                held.append({"id": f"{series_id}t{end}", "window": list(points[end - window:end]),
                             "target": points[end]})
    return train, held


def base_series(*, config: PipelineConfig, slot: ModelSlot, seed: int = 0) -> list[list[float]]:
    """Series a forecaster's base model is built from: generated from ``seed`` alone (no curated data)."""
    training = config.for_domain(slot.domain).training
    return make_sample_series(seed, training.forecast_series, length=training.forecast_length)
