"""Differential-privacy budgets: per-domain config, the create-only ledger, and accounting with Opacus.

Typical use by a training run::

    cfg = load_config().for_domain("medical").require_privacy()
    plan = plan_run(config=cfg, store=store, domain="medical", kind="weekly",
                    partitions=["2026-10-04_2026-10-11"], sample_rate=0.01, steps=200)  # BudgetExceeded: stop here
    entry = reserve_budget(config=cfg, store=store, plan=plan, run_id=run_id)    # before any GPU time
    ... train with entry.noise_multiplier, entry.sample_rate, at most entry.steps, cfg.max_grad_norm ...
    complete_run(config=cfg, store=store, domain="medical", run_id=run_id, steps=taken, epsilon=reported)

The unit of account is the record (content hash): give ``plan_run`` the ``records`` the run reads
(``RecordSet.of(row["content_sha256"] ...)``; a weekly run first keeps only ``untrained_records``) and
the budget is checked per record; ``record_report`` / ``subject_report`` give each record's and
subject's ε; ``artifacts_trained_on`` lists what a purge affects; ``privacy migrate`` upgrades old ledgers.
"""

from __future__ import annotations

from pipelines.privacy.accounting import (
    PartitionSpend,
    calibrate_noise,
    compose_epsilon,
    run_epsilon,
)
from pipelines.privacy.config import (
    SEED_DEFAULTS,
    DPTrainingSettings,
    PrivacyConfig,
    check_secure_mode,
    dp_training_settings,
)
from pipelines.privacy.exposure import (
    TrainedArtifact,
    artifacts_trained_on,
    planned_records,
    record_report,
    runs_that_read,
    subject_report,
    untrained_records,
)
from pipelines.privacy.ledger import (
    BudgetExceeded,
    DeltaTooLarge,
    RunPlan,
    complete_run,
    plan_run,
    release_budget,
    reserve_budget,
)
from pipelines.privacy.ledger_store import LedgerEntry, LedgerError, LedgerRecord, entry_key, read_ledger, record_runs
from pipelines.privacy.record_accounting import RecordGroupSpend, RecordRun, SubjectSpend
from pipelines.privacy.reports import budget_report, record_spend_history, spend_history
from pipelines.privacy.records import RecordSet, SubjectMap, bound_contributions, check_delta, hash_subject, max_delta

__all__ = [
    "SEED_DEFAULTS", "BudgetExceeded", "DPTrainingSettings", "DeltaTooLarge", "LedgerEntry", "LedgerError",
    "LedgerRecord", "PartitionSpend", "PrivacyConfig", "RecordGroupSpend", "RecordRun", "RecordSet", "RunPlan",
    "SubjectMap", "SubjectSpend", "TrainedArtifact", "artifacts_trained_on", "bound_contributions", "budget_report",
    "calibrate_noise", "check_delta", "check_secure_mode", "complete_run", "compose_epsilon", "dp_training_settings",
    "entry_key", "hash_subject", "max_delta", "plan_run", "planned_records", "read_ledger",
    "record_report", "record_runs", "record_spend_history", "release_budget", "reserve_budget", "run_epsilon", "runs_that_read",
    "spend_history", "subject_report", "untrained_records",
]
