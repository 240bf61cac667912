"""Pure privacy accounting with Opacus' accountants: calibrate noise, compose histories, check budgets.

A mechanism is one DP-SGD run: ``(noise_multiplier, sample_rate, steps)`` of the Poisson-subsampled
Gaussian mechanism. Runs that read the same record compose sequentially (the accountant over the
concatenated history); partitions hold disjoint records, so a domain's worst case is the max over
partitions (parallel composition). The privacy unit is one curated record: dedup keeps a record in
exactly one partition.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.privacy.config import ACCOUNTANTS, PrivacyConfig

# Small budgets (medical ε=0.1 per run) put RDP's optimum above Opacus' default orders; more orders
# only tighten the bound.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
                                      + list(range(64, 256, 8)) + [256, 384, 512, 1024])
# Budgets are compared with this slack: calibration and composition are the same deterministic
# computation, so only floating-point noise may separate equal values.
TOLERANCE = 1e-9

Mechanism = tuple[float, float, int]


def _check_mechanism(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (isinstance(noise_multiplier, (int, float)) and math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"noise_multiplier={noise_multiplier!r}: use a finite number > 0")
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise ValueError(f"sample_rate={sample_rate!r}: use 0 < sample_rate <= 1 (batch size / records)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: use an integer >= 1")


def _canonical(history: Iterable[Mechanism]) -> tuple[Mechanism, ...]:
    """Merge equal (sigma, q) mechanisms and sort: composition is commutative, so this is a cache key."""
    merged: dict[tuple[float, float], int] = {}
    for sigma, q, steps in history:
        _check_mechanism(sigma, q, steps)
        key = (float(sigma), float(q))
        merged[key] = merged.get(key, 0) + int(steps)
    return tuple(sorted((s, q, n) for (s, q), n in merged.items()))


# Opacus' PRV default eps_error (0.01, absolute) is 10 % of a medical run's ε=0.1 and its bound is
# eps_estimate + eps_error: ask for an error relative to ε instead (1 %, floor 1e-4: finer meshes cost
# seconds per composition). Both results are upper bounds, so the smaller one is kept.
PRV_EPS_ERROR = 0.01
PRV_RELATIVE_ERROR = 0.01
PRV_MIN_EPS_ERROR = 1e-4


@functools.lru_cache(maxsize=4096)
def _epsilon(history: tuple[Mechanism, ...], delta: float, accountant: str) -> float:
    if not history:
        return 0.0
    from opacus.accountants import PRVAccountant, RDPAccountant

    if accountant == "rdp":
        acc = RDPAccountant()
        acc.history = list(history)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "optimal order is the largest alpha": bound still valid
            return float(acc.get_epsilon(delta=delta, alphas=list(RDP_ORDERS)))
    acc = PRVAccountant()
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PRV sizes its domain with RDP, which warns the same
        try:
            coarse = float(acc.get_epsilon(delta=delta, eps_error=PRV_EPS_ERROR))
        except OverflowError:  # so little noise that PRV's domain is unbounded: no finite guarantee
            return math.inf
        error = PRV_RELATIVE_ERROR * coarse
        if accountant == "prv-coarse" or not math.isfinite(coarse) or error >= PRV_EPS_ERROR:
            return coarse
        return min(coarse, float(acc.get_epsilon(delta=delta, eps_error=max(error, PRV_MIN_EPS_ERROR))))


def compose_epsilon(history: Iterable[Mechanism], *, delta: float, accountant: str) -> float:
    """ε of the sequential composition of mechanisms at ``delta``.

    Args:
        history: ``(noise_multiplier, sample_rate, steps)`` per mechanism, in any order.
        delta: the δ of the guarantee.
        accountant: ``prv`` or ``rdp``.

    Returns:
        The accountant's upper bound on ε (0.0 for an empty history).
    """
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r}: use one of {ACCOUNTANTS}")
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r}: use 0 < delta < 1")
    return _epsilon(_canonical(history), float(delta), accountant)


# Opacus' get_noise_multiplier stops at sigma = 1e6: beyond it the budget is "too low".
MAX_SIGMA = 1e6


@functools.lru_cache(maxsize=1024)
def _noise(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    # Opacus' bisection (get_noise_multiplier), over the same cached _epsilon that composes the ledger, so a
    # planned run's ε is exactly what calibration saw; Opacus' default tolerance (0.01 absolute) would waste
    # 10% of a medical run's ε=0.1.
    tolerance = min(0.01, target_epsilon / 200)

    def eps(sigma: float) -> float:
        return _epsilon(((sigma, sample_rate, steps),), delta, accountant)

    def coarse(sigma: float) -> float:  # PRV at its default error, minus that error: cheap, to bracket only
        if accountant == "rdp":
            return eps(sigma)
        return _epsilon(((sigma, sample_rate, steps),), delta, "prv-coarse") - PRV_EPS_ERROR

    low, high = 0.0, 10.0
    while coarse(high) > target_epsilon:
        low, high = high, 2 * high
        if high > MAX_SIGMA:
            raise ValueError(f"the privacy budget is too low: ε={target_epsilon:g} cannot be reached with "
                             f"q={sample_rate:g} over {steps} steps; raise the target or lower the steps/sample rate")
    while high - low > high * 0.002:
        sigma = (low + high) / 2
        if coarse(sigma) < target_epsilon:
            high = sigma
        else:
            low = sigma
    # The exact (fine) bound on a narrow bracket around the coarse answer.
    low, high = high * 0.97, high * 1.03
    while eps(high) > target_epsilon:
        low, high = high, high * 1.1
        if high > MAX_SIGMA:
            raise ValueError(f"the privacy budget is too low: ε={target_epsilon:g} cannot be reached")
    eps_high = eps(high)
    while target_epsilon - eps_high > tolerance:
        sigma = (low + high) / 2
        value = eps(sigma)
        if value <= target_epsilon:
            high, eps_high = sigma, value
        else:
            low = sigma
    return high


def calibrate_noise(*, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose run stays within ``target_epsilon``.

    Raises:
        ValueError: invalid arguments, or a budget too small for any noise (Opacus' "privacy budget is too low").
    """
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon={target_epsilon!r}: use a number > 0")
    _check_mechanism(1.0, sample_rate, steps)
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r}: use one of {ACCOUNTANTS}")
    return _noise(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant)


def run_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε a training run reports after ``steps`` steps: what the trainer must call instead of Opacus' accountant.

    By design ``noise_multiplier == 0`` (no noise: no guarantee) is ``inf`` and 0 steps is 0.0; Opacus'
    PRV accountant would raise OverflowError for the former.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r}: use an integer >= 0")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return compose_epsilon([(noise_multiplier, sample_rate, steps)], delta=delta, accountant=accountant)


@dataclass(frozen=True)
class PartitionSpend:
    """What the runs that read one partition have spent, against the domain's budget.

    ``remaining`` is ``budget - epsilon``: composition is not additive, so it is a guide, not a
    promise that a run of that ε still fits (``plan_run`` decides that by composing).
    """

    partition: str
    runs: tuple[str, ...]
    epsilon: float
    weekly_epsilon: float
    monthly_epsilon: float
    budget: float
    weekly_budget: float
    monthly_budget: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.epsilon)

    @property
    def weekly_remaining(self) -> float:
        return max(0.0, min(self.weekly_budget - self.weekly_epsilon, self.remaining))

    @property
    def monthly_remaining(self) -> float:
        return max(0.0, min(self.monthly_budget - self.monthly_epsilon, self.remaining))

    def over_budget(self) -> list[str]:
        """Names of the limits this spend exceeds (empty when within budget)."""
        out = []
        if self.weekly_epsilon > self.weekly_budget + TOLERANCE:
            out.append("weekly share")
        if self.monthly_epsilon > self.monthly_budget + TOLERANCE:
            out.append("monthly share")
        if self.epsilon > self.budget + TOLERANCE:
            out.append("total budget")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"partition": self.partition, "runs": list(self.runs), "epsilon": self.epsilon,
                "weekly_epsilon": self.weekly_epsilon, "monthly_epsilon": self.monthly_epsilon,
                "budget": self.budget, "weekly_budget": self.weekly_budget, "monthly_budget": self.monthly_budget,
                "remaining": self.remaining, "weekly_remaining": self.weekly_remaining,
                "monthly_remaining": self.monthly_remaining}


@dataclass(frozen=True)
class Charge:
    """One run's charge to the partitions it read (what the ledger says, reduced to accounting)."""

    run_id: str
    kind: str
    partitions: tuple[str, ...]
    mechanism: Mechanism


def partition_spend(*, config: PrivacyConfig, partition: str, charges: Iterable[Charge]) -> PartitionSpend:
    """Compose every charge that read ``partition`` (per kind and in total) with the configured accountant."""
    mine = [c for c in charges if partition in c.partitions]

    def eps(kind: str | None) -> float:
        return compose_epsilon([c.mechanism for c in mine if kind is None or c.kind == kind],
                               delta=config.delta, accountant=config.accountant)

    return PartitionSpend(partition=partition, runs=tuple(sorted(c.run_id for c in mine)), epsilon=eps(None),
                          weekly_epsilon=eps("weekly"), monthly_epsilon=eps("monthly"), budget=float(config.epsilon),
                          weekly_budget=config.weekly_budget, monthly_budget=config.monthly_budget)
