"""monthly_full_retrain: every domain retrained from the base model on all its curated data, with DP."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from mlops_airflow import task_failure_alert

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
    params={
        "domain": Param("", type="string", description="one domain, or empty for all"),
        "epsilon": Param(None, type=["null", "number"], exclusiveMinimum=0,
                         description="per-run target epsilon (default: the domain's monthly_epsilon)"),
        "dry_run": Param(False, type="boolean", description="plan and check the budget only"),
    },
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "on_failure_callback": task_failure_alert,
    },
)
def monthly_full_retrain():
    @task
    def list_domains() -> list[str]:
        from airflow.sdk import get_current_context

        from pipelines.finetune import domains_to_train
        from mlops_airflow import task_config_and_store

        config, store = task_config_and_store()
        return domains_to_train(config, store, kind="monthly", only=get_current_context()["params"]["domain"] or None)

    @task(map_index_template="{{ domain }}")
    def plan_retrain(domain: str) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.finetune import RunRefused, plan_run
        from mlops_airflow import run_request, task_config_and_store

        config, store = task_config_and_store()
        try:
            return plan_run(config, store, request=run_request(domain, kind="monthly"))
        except RunRefused as exc:
            raise AirflowFailException(str(exc)) from None  # budget or data: retrying cannot help

    @task(queue="gpu", pool="gpu", map_index_template="{{ domain }}", retry_delay=dt.timedelta(seconds=30))
    def train_model(plan: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.finetune import train_run
        from mlops_airflow import task_config_and_store

        if plan.get("dry_run"):
            raise AirflowSkipException(f"dry run: {plan['domain']} would train {plan['steps']} steps, "
                                       f"sigma={plan['noise_multiplier']:.3f}, epsilon={plan['epsilon']:.4f}")
        config, store = task_config_and_store(plan["domain"])
        return train_run(config, store, plan=plan)

    @task(map_index_template="{{ domain }}")
    def promote_model(trained: dict) -> dict:
        from pipelines.finetune import promote_run
        from mlops_airflow import task_config_and_store, who

        config, store = task_config_and_store(trained["domain"])
        return promote_run(config, store, trained=trained, who=who())

    promote_model.expand(trained=train_model.expand(plan=plan_retrain.expand(domain=list_domains())))


monthly_full_retrain()
