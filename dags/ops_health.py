"""ops_health: daily checks that alert before something breaks: key age, GPU temperature, model accuracy drift."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from mlops_airflow import default_args, task_timeout

DOC = """
### Daily operational checks

Each task alerts through the same notifier as the DAGs and the serving API (`alerts:` in `config/pipeline.yaml`:
DingTalk-compatible webhook and/or email) and succeeds: an alert is the output, not a failure.

| task | alerts when |
|---|---|
| `check_key_age` | the active key-encryption key is older than `security.kek_max_age_days` (90); rotate with `python -m pipelines security rotate-kek` |
| `check_gpu_temperature` | a GPU of the worker that runs it (queue `gpu`) is above 85 °C (NVML; no GPU, no reading) |
| `check_model_accuracy` | a domain's production model scores more than 5% (relative) below the model it replaced, on the same held-out split (from the manifests the training runs wrote) |

Run by hand: trigger the DAG in the UI, or `python -m pipelines security key-age` / `thresholds`.
"""


@dag(
    dag_id="ops_health",
    schedule="@daily",
    start_date=dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["operations", "alerts"],
    doc_md=DOC,
    default_args=default_args(owner="platform-oncall", retry_delay=dt.timedelta(minutes=5),
                              execution_timeout=task_timeout("ops_health")),
)
def ops_health():
    @task
    def check_key_age() -> dict:
        from pipelines.config import load_config
        from pipelines.monitor_checks import key_age

        return key_age(config=load_config())

    @task(queue="gpu")
    def check_gpu_temperature() -> dict:
        from pipelines.config import load_config
        from pipelines.monitor_checks import gpu_temperature

        return gpu_temperature(config=load_config())

    @task
    def check_model_accuracy() -> dict:
        from pipelines.config import load_config
        from pipelines.monitor_checks import model_accuracy

        from mlops_airflow import task_store

        config = load_config()
        return model_accuracy(config=config, store=task_store(config, identity="training"))

    check_key_age()
    check_gpu_temperature()
    check_model_accuracy()


ops_health()
