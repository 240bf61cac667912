"""The ``privacy`` section: how much ε each record of a domain may lose in total, and how it is split.

A domain's effective settings are, from weakest to strongest: the class defaults, the built-in
seed for that domain (``SEED_DEFAULTS``), the top-level ``privacy`` section and the domain's
``domains.<d>.privacy`` block.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.config.base import ConfigError

ACCOUNTANTS = ("prv", "rdp")
KINDS = ("weekly", "monthly")

# Budgets agreed per domain (ε per record over the life of the data, δ well below 1/n).
# Where records carry a subject (a patient, a customer), medical and customer service bound what one
# subject contributes to a run (max_records_per_subject): a subject's ε is then at most k times a record's per run.
# Weekly runs read one new partition each; a monthly retrain reads every partition, so the monthly
# share is larger and each retrain's target is smaller than its share (several retrains compose).
SEED_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "medical": {"epsilon": 0.5, "delta": 1e-5, "weekly_share": 0.4, "weekly_epsilon": 0.1, "monthly_epsilon": 0.1,
                "max_records_per_subject": 1},
    "legal": {"epsilon": 2.0, "delta": 1e-5, "weekly_share": 0.4, "weekly_epsilon": 0.4, "monthly_epsilon": 0.4},
    "finance": {"epsilon": 3.0, "delta": 1e-5, "weekly_share": 0.4, "weekly_epsilon": 0.6, "monthly_epsilon": 0.6},
    "customer_service": {"epsilon": 8.0, "delta": 1e-5, "weekly_share": 0.4, "weekly_epsilon": 1.6,
                         "monthly_epsilon": 1.6, "max_records_per_subject": 2},
}

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def _number(name: str, value: Any) -> float | None:
    # YAML 1.1 reads `delta: 1e-5` (no dot) as a string, so numeric text is accepted.
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return None if value is None else float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"privacy.{name}={value!r}: expected a number")


def _testing() -> bool:
    """True inside a pytest test (pytest sets ``PYTEST_CURRENT_TEST`` for the test it runs)."""
    return bool(os.environ.get("PYTEST_CURRENT_TEST"))


@dataclass(frozen=True)
class PrivacyConfig:
    """One domain's differential-privacy budget and how runs spend it.

    Attributes:
        epsilon: total ε a record may lose over every run that reads it (required: no generic default).
        delta: δ of every guarantee; keep it well below 1 / number of records.
        weekly_share: fraction of ``epsilon`` reserved for weekly incremental fine-tunes; the rest is
            for monthly full retrains.
        weekly_epsilon: target ε of one weekly run (noise is calibrated to it); default
            ``weekly_share * epsilon / 2``.
        monthly_epsilon: target ε of one monthly retrain; default ``(1 - weekly_share) * epsilon / 3``.
        max_grad_norm: per-sample gradient clipping bound used by training.
        accountant: ``prv`` (tight, default) or ``rdp`` (looser, cheaper), used for calibration and
            for composing the ledger.
        secure_mode: pass ``secure_mode`` to Opacus (cryptographically safe noise); true in production.
        ledger_prefix: object-store prefix of the ledger (``<prefix>/<domain>/<run_id>.json``).
        poisson_sampling: Poisson-sampled batches (what every accountant here assumes). ``false`` trains
            on shuffled fixed batches that the ledger would still book as Poisson: refused outside tests.
        max_records_per_subject: contribution bound k (records per subject per run) when records carry a
            ``subject_id``; None: no bound (each record is its own unit).
    """

    epsilon: float | None = None
    delta: float = 1e-5
    weekly_share: float = 0.4
    weekly_epsilon: float | None = None
    monthly_epsilon: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    secure_mode: bool = True
    ledger_prefix: str = "privacy/ledger"
    poisson_sampling: bool = True
    max_records_per_subject: int | None = None

    def __post_init__(self) -> None:
        if self.epsilon is None:
            raise ConfigError("privacy.epsilon is required for this domain (no built-in budget): set "
                              "domains.<domain>.privacy.epsilon in config/pipeline.yaml")
        for name in ("epsilon", "delta", "weekly_share", "max_grad_norm", "weekly_epsilon", "monthly_epsilon"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if not 0 < self.epsilon < math.inf:
            raise ConfigError(f"privacy.epsilon={self.epsilon}: use a finite number > 0")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta={self.delta}: use 0 < delta < 1 (typically < 1/number of records)")
        if not 0 < self.weekly_share < 1:
            raise ConfigError(f"privacy.weekly_share={self.weekly_share}: use 0 < weekly_share < 1")
        if self.weekly_epsilon is None:
            object.__setattr__(self, "weekly_epsilon", self.weekly_budget / 2)
        if self.monthly_epsilon is None:
            object.__setattr__(self, "monthly_epsilon", self.monthly_budget / 3)
        for name, share in (("weekly_epsilon", self.weekly_budget), ("monthly_epsilon", self.monthly_budget)):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"privacy.{name}={value!r}: use a number > 0")
            if value > share + 1e-12:
                raise ConfigError(f"privacy.{name}={value} exceeds its share of the budget ({share:.6g} = "
                                  f"{'weekly_share' if name == 'weekly_epsilon' else '(1 - weekly_share)'} * "
                                  f"epsilon {self.epsilon}): lower it or raise weekly_share/epsilon")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"privacy.max_grad_norm={self.max_grad_norm}: use a number > 0")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"privacy.accountant={self.accountant!r}: use one of {ACCOUNTANTS}")
        if not isinstance(self.secure_mode, bool):
            raise ConfigError(f"privacy.secure_mode={self.secure_mode!r}: use true or false")
        if not isinstance(self.poisson_sampling, bool):
            raise ConfigError(f"privacy.poisson_sampling={self.poisson_sampling!r}: use true")
        if not self.poisson_sampling and not _testing():
            raise ConfigError("privacy.poisson_sampling=false trains on fixed shuffled batches while the accountant "
                              "books Poisson sampling, so the reported ε would be wrong: remove the key (true is the "
                              "default); it is accepted only inside the test suite")
        k = self.max_records_per_subject
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"privacy.max_records_per_subject={k!r}: use an integer >= 1, or leave it unset")
        if not isinstance(self.ledger_prefix, str) or not _PREFIX_RE.match(self.ledger_prefix):
            raise ConfigError(f"privacy.ledger_prefix={self.ledger_prefix!r}: use a prefix like privacy/ledger "
                              "(no leading/trailing '/')")

    @property
    def weekly_budget(self) -> float:
        """ε available to all weekly runs that read one partition."""
        return self.weekly_share * self.epsilon

    @property
    def monthly_budget(self) -> float:
        """ε available to all monthly retrains that read one partition."""
        return (1 - self.weekly_share) * self.epsilon

    def budget_for(self, kind: str) -> float:
        """The share of the budget that runs of ``kind`` may compose to, per partition."""
        if kind == "weekly":
            return self.weekly_budget
        if kind == "monthly":
            return self.monthly_budget
        raise ValueError(f"run kind {kind!r}: use one of {KINDS}")

    def target_for(self, kind: str) -> float:
        """The ε one run of ``kind`` is calibrated to."""
        self.budget_for(kind)
        return self.weekly_epsilon if kind == "weekly" else self.monthly_epsilon
