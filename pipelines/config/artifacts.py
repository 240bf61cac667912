"""The ``artifacts`` section: where model artifacts live, how strict the promotion gate is, and what a model is
evaluated on."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.base import ConfigError
from pipelines.config.privacy import _testing

# How much a candidate must beat the trivial baseline of its evaluation set by, per task: absolute for accuracy
# (higher is better), relative for perplexity and MAE (lower is better).
BASELINE_MARGINS: Mapping[str, float] = {"classification": 0.02, "causal_lm": 0.05, "forecast": 0.05}
EVALUATION_SOURCES = ("public",)


@dataclass(frozen=True)
class EvaluationSet:
    """A model slot's evaluation set: data that is not private (public or consented), never its training records.

    Attributes:
        source: ``public`` (the only one: a slot without a public set is refused, see ``docs/TRAINING.md``).
        key: object-store key of a JSONL file of examples (``evaluation/<domain>/eval.jsonl``), or
        path: a JSONL file in the project (relative to the project root) instead.
    """

    source: str = "public"
    key: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        if self.source not in EVALUATION_SOURCES:
            raise ConfigError(f"evaluation source={self.source!r}: use public (a public or consented evaluation "
                              "set; private held-out records are not used for released numbers)")
        if bool(self.key) == bool(self.path):
            raise ConfigError("an evaluation set needs exactly one of key (object store) or path (project file)")
        if self.key and (self.key.startswith("/") or ".." in self.key.split("/")):
            raise ConfigError(f"evaluation key={self.key!r}: use a relative object key such as "
                              "evaluation/legal/eval.jsonl")


@dataclass(frozen=True)
class ArtifactsConfig:
    """Where model artifacts live, how strict the promotion gate is, and what models are evaluated on.

    Attributes:
        prefix: key prefix of every model object (``<prefix>/<domain>/artifacts/...``).
        max_drop: largest relative drop of the gate metric that still promotes (0.05 = 5%).
            A domain may override it with ``domains.<d>.training.max_drop``.
        cache_dir: local folder that fetched artifacts are kept in; empty = ``<tmp>/mlops-models``.
        baseline_margin: per task (``classification``, ``causal_lm``, ``forecast``), how much a candidate must
            beat the trivial baseline of its evaluation set by (defaults ``BASELINE_MARGINS``).
        evaluation: per model slot (``legal``, ``finance_forecast``), its public evaluation set
            (``{source: public, key: evaluation/legal/eval.jsonl}``). A forecaster slot needs none: it is
            evaluated on generated public series.
        trivial_gate: refuse a candidate that does not beat its trivial baseline (always on; ``false`` is
            accepted only inside the test suite, whose tiny seconds-long runs learn too little to beat it).
        require_approval: domains whose gated promotion also waits for a person's decision (Airflow's
            human-in-the-loop approval in ``domain_finetune``/``monthly_full_retrain``); a domain's forecaster
            slot follows its domain. ``PIPELINE__ARTIFACTS__REQUIRE_APPROVAL=medical,legal`` in the environment.
    """

    prefix: str = "models"
    max_drop: float = 0.05
    cache_dir: str = ""
    baseline_margin: Mapping[str, float] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    trivial_gate: bool = True
    require_approval: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.require_approval, str) or not isinstance(self.require_approval, (tuple, list)) \
                or not all(isinstance(d, str) and d for d in self.require_approval):
            raise ConfigError(f"artifacts.require_approval={self.require_approval!r}: use a list of domains, "
                              "e.g. [medical]")
        object.__setattr__(self, "require_approval", tuple(dict.fromkeys(self.require_approval)))
        parts = self.prefix.split("/")
        if not self.prefix or "" in parts or ".." in parts:
            raise ConfigError(f"artifacts.prefix={self.prefix!r} must be a non-empty key prefix without "
                              "leading/trailing '/' (e.g. models)")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)):
            raise ConfigError(f"artifacts.max_drop={self.max_drop!r} must be a number such as 0.05")
        if not 0.0 <= self.max_drop < 1.0:
            raise ConfigError(f"artifacts.max_drop={self.max_drop}: use a fraction in [0, 1), e.g. 0.05 for 5%")
        if not isinstance(self.cache_dir, str):
            raise ConfigError(f"artifacts.cache_dir={self.cache_dir!r} must be a path string (or empty)")
        if not isinstance(self.trivial_gate, bool):
            raise ConfigError(f"artifacts.trivial_gate={self.trivial_gate!r}: use true")
        if not self.trivial_gate and not _testing():
            raise ConfigError("artifacts.trivial_gate=false would promote a model that learned nothing: remove the key "
                              "(true is the default); it is accepted only inside the test suite")
        object.__setattr__(self, "baseline_margin", _margins(self.baseline_margin))
        object.__setattr__(self, "evaluation", _evaluation_sets(self.evaluation))

    @property
    def cache_path(self) -> Path:
        """The folder fetched artifacts are cached in."""
        return Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir()) / "mlops-models"

    def margin_for(self, task: str) -> float:
        """The trivial-baseline margin of ``task``."""
        return self.baseline_margin.get(task, BASELINE_MARGINS.get(task, 0.0))

    def requires_approval(self, domain: str) -> bool:
        """Whether a promotion of ``domain``'s models waits for a person's approval."""
        return domain in self.require_approval

    def evaluation_for(self, slot: str) -> EvaluationSet | None:
        """The slot's public evaluation set, or None when none is configured."""
        return self.evaluation.get(slot)


def _margins(values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"artifacts.baseline_margin={values!r}: use a mapping such as {{classification: 0.02}}")
    out = dict(BASELINE_MARGINS)
    for task, value in values.items():
        if task not in BASELINE_MARGINS:
            raise ConfigError(f"artifacts.baseline_margin.{task}: unknown task; use {sorted(BASELINE_MARGINS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 <= value < 1.0:
            raise ConfigError(f"artifacts.baseline_margin.{task}={value!r}: use a fraction in [0, 1), e.g. 0.02")
        out[task] = float(value)
    return out


def _evaluation_sets(values: Any) -> dict[str, EvaluationSet]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"artifacts.evaluation={values!r}: use a mapping of slot -> {{source: public, key: ...}}")
    out = {}
    for slot, block in values.items():
        if isinstance(block, EvaluationSet):
            out[slot] = block
            continue
        if not isinstance(block, Mapping):
            raise ConfigError(f"artifacts.evaluation.{slot}: expected a mapping such as "
                              f"{{source: public, key: evaluation/{slot}/eval.jsonl}}")
        unknown = sorted(set(block) - {"source", "key", "path"})
        if unknown:
            raise ConfigError(f"artifacts.evaluation.{slot}: unknown key(s) {unknown}; known: ['key', 'path', "
                              "'source']")
        try:
            out[slot] = EvaluationSet(**{k: str(v) for k, v in block.items()})
        except ConfigError as exc:
            raise ConfigError(f"artifacts.evaluation.{slot}: {exc}") from None
    return out
