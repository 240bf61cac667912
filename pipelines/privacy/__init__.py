"""Differential-privacy budgets: per-domain config, the create-only ledger, and accounting with Opacus.

Typical use by a training run::

    cfg = privacy_config(load_config(), "medical")
    plan = plan_run(config=cfg, store=store, domain="medical", kind="weekly",
                    partitions=["2026-10-04_2026-10-11"], sample_rate=0.01, steps=200)  # BudgetExceeded: stop here
    entry = reserve_budget(config=cfg, store=store, plan=plan, run_id=run_id)    # before any GPU time
    ... train with entry.noise_multiplier, entry.sample_rate, at most entry.steps, cfg.max_grad_norm ...
    complete_run(config=cfg, store=store, domain="medical", run_id=run_id, steps=taken, epsilon=reported)
"""

from __future__ import annotations

from pipelines.privacy.accounting import (
    PartitionSpend,
    calibrate_noise,
    compose_epsilon,
    recompute_epsilon,
)
from pipelines.privacy.config import SEED_DEFAULTS, PrivacyConfig, check_secure_mode, privacy_config
from pipelines.privacy.ledger import (
    BudgetExceeded,
    LedgerEntry,
    LedgerError,
    LedgerRecord,
    RunPlan,
    budget_report,
    complete_run,
    entry_key,
    plan_run,
    read_ledger,
    release_budget,
    reserve_budget,
    spend_history,
)

__all__ = [
    "SEED_DEFAULTS", "BudgetExceeded", "LedgerEntry", "LedgerError", "LedgerRecord", "PartitionSpend",
    "PrivacyConfig", "RunPlan", "budget_report", "calibrate_noise", "check_secure_mode", "complete_run", "compose_epsilon", "entry_key",
    "plan_run", "privacy_config", "read_ledger", "recompute_epsilon", "release_budget", "reserve_budget", "spend_history",
]
