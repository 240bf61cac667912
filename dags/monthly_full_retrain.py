"""monthly_full_retrain: every domain retrained from the base model on all its curated data, with DP."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from dags._training import list_domains, train_domain, training_params
from mlops_airflow import default_args, task_timeout

DOC = """
### Monthly full retrain

On the first of each month, for every domain: train **from the base model** (an artifact under `models/base/`) on
**all** committed curated partitions, learning rate decaying to `1e-6`, with Opacus DP-SGD. The run reads every
partition again, so its ε composes *sequentially* with what those partitions already spent (weekly fine-tunes and
earlier retrains); the share of each domain's budget reserved for full retrains is `privacy.weekly_share` (the rest).
A run that would push any partition past the budget is refused before training.

| task | what it does |
|---|---|
| `plan_retrain` | all partitions, noise calibration, budget check, ledger reservation |
| `train_model` | DP training from the base model (pool/queue `gpu`), checkpoints every epoch, resumable |
| `approve_promotion` | a person's Approve/Reject for a domain in `artifacts.require_approval` (others pass at once); a rejection skips the promotion |
| `promote_model` | gate against production on the same held-out split; a full retrain is a new **major** version |

**Params**: `domain` (empty = all), `epsilon` (per-run target), `dry_run`.
Inspect budgets with `python -m pipelines privacy budget --domain <d>` before triggering by hand.
"""


@dag(
    dag_id="monthly_full_retrain",
    schedule="@monthly",
    start_date=dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["training", "privacy", "monthly"],
    doc_md=DOC,
    params=training_params("monthly"),
    default_args=default_args(owner="ml-platform", execution_timeout=task_timeout("monthly_full_retrain")),
)
def monthly_full_retrain():
    # Every slot with committed data, then per slot:
    # plan_retrain (all partitions, budget check) -> train_model (GPU, from the base model) -> approve_promotion -> promote_model.
    domains = list_domains(kind="monthly")
    train_domain(kind="monthly", plan_task_id="plan_retrain").expand(domain=domains)


monthly_full_retrain()
