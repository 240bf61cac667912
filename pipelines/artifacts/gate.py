"""The evaluation gate: a candidate must beat its trivial baseline, and may not be worse than production by more
than ``max_drop`` (relative).

Pure logic, no I/O. Both metric sets must come from the same held-out split: when both carry a
``split`` key (the split's digest) and they differ, the gate refuses rather than compare apples and pears.

The trivial baseline is what a model that learned nothing scores on the same split (``metrics["trivial"]``,
see :mod:`pipelines.artifacts.baseline`): the majority class (classification, on accuracy), a unigram model
(causal LM, on perplexity), the last value (forecast, on MAE). A candidate must beat it by ``margin``: an
absolute margin for a higher-is-better metric (0.02 accuracy), a relative one for a lower-is-better metric
(0.05: 5 % lower perplexity or MAE). DP that learned nothing is refused with the numbers, never promoted at chance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# The metric each task is gated on, and whether higher is better.
GATE_METRICS: dict[str, tuple[str, bool]] = {
    "classification": ("macro_f1", True),
    "causal_lm": ("perplexity", False),
    "forecast": ("mae", False),
}
# The metric each task is compared with its trivial baseline on, its direction, and the default margin.
TRIVIAL_METRICS: dict[str, tuple[str, bool, float]] = {
    "classification": ("accuracy", True, 0.02),
    "causal_lm": ("perplexity", False, 0.05),
    "forecast": ("mae", False, 0.05),
}
# Rounding of the relative change: floating noise must not turn an exact 5.0% drop into 5.0000001%.
_DIGITS = 9


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the gate.

    Attributes:
        passed: whether the candidate may be promoted.
        reason: one sentence for people and the promotion record.
        relative_change: (candidate - production) / |production| of the metric, rounded to 9 places;
            None when there was nothing to compare.
        metric: the metric compared.
        candidate_value: the candidate's value.
        production_value: production's value (None without production).
        max_drop: the allowed relative drop.
        higher_is_better: direction of the metric.
        forced: True when a person bypassed the gate (``force_gate``).
    """

    passed: bool
    reason: str
    relative_change: float | None
    metric: str = ""
    candidate_value: float | None = None
    production_value: float | None = None
    max_drop: float | None = None
    higher_is_better: bool = True
    forced: bool = False
    trivial_metric: str = ""
    trivial_value: float | None = None
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_metric_for(task: str) -> tuple[str, bool]:
    """``(metric, higher_is_better)`` a task is gated on (ValueError for an unknown task)."""
    try:
        return GATE_METRICS[task]
    except KeyError:
        raise ValueError(f"no gate metric for task {task!r}; known: {sorted(GATE_METRICS)} (pass --metric)") from None


def _lookup(metrics: Mapping[str, Any], metric: str) -> Any:
    """``metrics[metric]``, where a dotted name (``eval.accuracy``) walks nested mappings."""
    value: Any = metrics
    for part in metric.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def evaluate_gate(
    *,
    candidate: Mapping[str, Any],
    production: Mapping[str, Any] | None,
    metric: str,
    max_drop: float,
    higher_is_better: bool = True,
    trivial: Mapping[str, Any] | None = None,
    trivial_metric: str = "",
    trivial_higher_is_better: bool = True,
    margin: float = 0.0,
) -> GateDecision:
    """Check a candidate against its trivial baseline, then compare its held-out metric with production's.

    The drop is relative: for a higher-is-better metric ``(production - candidate) / |production|``,
    for a lower-is-better one (perplexity, MAE) ``(candidate - production) / |production|``. The gate
    refuses when the drop exceeds ``max_drop``; a drop of exactly ``max_drop`` passes.

    Args:
        candidate: the candidate's metrics (``metric`` may be dotted for nested values).
        production: production's metrics on the same split, or None when nothing is in production.
        metric: the metric to compare.
        max_drop: the largest relative drop that still passes (0.05 = 5%).
        higher_is_better: False for perplexity-like metrics.
        trivial: the trivial baseline's metrics on the candidate's split (``metrics["trivial"]``), or None to
            skip that check (artifacts trained before baselines were recorded).
        trivial_metric: the metric compared with the trivial baseline (``TRIVIAL_METRICS``).
        trivial_higher_is_better: its direction.
        margin: by how much the candidate must beat the trivial baseline (absolute when higher is better,
            relative when lower is better).

    Returns:
        The decision. No production -> passes if it beats the trivial baseline.
    """
    if not 0.0 <= max_drop < 1.0:
        raise ValueError(f"max_drop={max_drop}: use a fraction in [0, 1), e.g. 0.05")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin={margin}: use a fraction in [0, 1), e.g. 0.02")
    common = {"metric": metric, "max_drop": max_drop, "higher_is_better": higher_is_better}
    if trivial is not None:
        refused = _below_trivial(candidate, trivial, metric=trivial_metric, higher_is_better=trivial_higher_is_better,
                                 margin=margin, common=common)
        if refused is not None:
            return refused
        common.update(trivial_metric=trivial_metric, trivial_value=_finite(_lookup(trivial, trivial_metric)),
                      margin=margin)
    value = _finite(_lookup(candidate, metric))
    if value is None:
        return GateDecision(False, f"candidate has no finite {metric!r} metric (got "
                                   f"{_lookup(candidate, metric)!r}); evaluate it on the held-out split", None,
                            candidate_value=None, **common)
    if production is None:
        return GateDecision(True, f"no model in production: {metric}={value:.6g} accepted", None,
                            candidate_value=value, **common)
    base = _finite(_lookup(production, metric))
    if base is None:
        return GateDecision(False, f"production has no finite {metric!r} metric to compare with; evaluate "
                                   "production on the candidate's held-out split, or promote with --force",
                            None, candidate_value=value, **common)
    split_c, split_p = candidate.get("split"), production.get("split")
    if split_c is not None and split_p is not None and split_c != split_p:
        return GateDecision(False, f"candidate and production were evaluated on different held-out splits "
                                   f"({split_c} vs {split_p}); evaluate both on the same split",
                            None, candidate_value=value, production_value=base, **common)
    if base == 0.0:
        change = 0.0 if value == 0.0 else math.copysign(math.inf, value)
    else:
        change = round((value - base) / abs(base), _DIGITS)
    drop = -change if higher_is_better else change
    direction = "higher" if higher_is_better else "lower"
    summary = (f"{metric} {value:.6g} vs production {base:.6g}: {change:+.2%} "
               f"({direction} is better; allowed drop {max_drop:.2%})")
    if drop > max_drop:
        return GateDecision(False, f"refused: {summary}", change, candidate_value=value, production_value=base,
                            **common)
    return GateDecision(True, f"passed: {summary}", change, candidate_value=value, production_value=base, **common)


def _below_trivial(candidate: Mapping[str, Any], trivial: Mapping[str, Any], *, metric: str, higher_is_better: bool,
                   margin: float, common: Mapping[str, Any]) -> GateDecision | None:
    """A refusal when the candidate does not beat the trivial baseline by ``margin``, else None."""
    name = trivial.get("name", "trivial baseline")
    value, base = _finite(_lookup(candidate, metric)), _finite(_lookup(trivial, metric))
    extra = {**common, "trivial_metric": metric, "trivial_value": base, "margin": margin}
    if value is None or base is None:
        return GateDecision(False, f"refused: no finite {metric!r} for the candidate ({value!r}) or its {name} "
                                   f"baseline ({base!r}) on the same split", None, candidate_value=value, **extra)
    split_c, split_t = candidate.get("split"), trivial.get("split")
    if split_c is not None and split_t is not None and split_c != split_t:
        return GateDecision(False, f"refused: the {name} baseline was computed on another split ({split_t} vs "
                                   f"{split_c})", None, candidate_value=value, **extra)
    if higher_is_better:
        need, ok = round(base + margin, _DIGITS), round(value, _DIGITS) >= round(base + margin, _DIGITS)
        rule = f"{metric} {value:.4g} vs {name} {base:.4g} + margin {margin:g} = {need:.4g}"
    else:
        need, ok = round(base * (1.0 - margin), _DIGITS), round(value, _DIGITS) <= round(base * (1.0 - margin), _DIGITS)
        rule = f"{metric} {value:.4g} vs {name} {base:.4g} - {margin:.0%} = {need:.4g}"
    if ok:
        return None
    return GateDecision(False, f"refused: does not beat its trivial baseline: {rule} (the model learned too little; "
                               "more data, a larger budget or a better base would help)", None,
                        candidate_value=value, **extra)


def force_gate(*, reason: str, metric: str = "") -> GateDecision:
    """A decision that records a person bypassing the gate (``promote --force``)."""
    if not reason.strip():
        raise ValueError("a forced promotion needs a reason (--why)")
    return GateDecision(True, f"forced: {reason}", None, metric=metric, forced=True)
