"""Airflow glue shared by the DAGs: ``default_args`` (owner, retries, failure alert), the SLA-style duration alert,
``task_timeout`` (``execution_timeout``), the curated-data Asset schedule, who a run acts for, and ``task_store``
(the one task-context helper: the object store of a task).

Lives in plugins/ (on sys.path for DAGs and tasks); keeps imports light at module level. DAG topology lives in
``dags/`` (the training DAGs' shared tasks in ``dags/_training.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def task_failure_alert(context: dict[str, Any]) -> None:
    """on_failure_callback: alert through the configured channels with what failed and where to look."""
    from pipelines.alerts import send_alert
    from pipelines.config import load_config

    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    map_index = getattr(ti, "map_index", -1)
    exception = context.get("exception")
    text = (
        f"- DAG: `{dag_id}`\n- task: `{task_id}`" + (f" [{map_index}]" if map_index not in (None, -1) else "")
        + f"\n- run: `{context.get('run_id')}`\n- error: {str(exception)[:1500]}"
    )
    send_alert(load_config().alerts, title=f"{dag_id}.{task_id} failed", text=text)


def default_args(*, owner: str, retry_delay: dt.timedelta = dt.timedelta(minutes=2), **extra: Any) -> dict[str, Any]:
    """The project's ``default_args``: an owner, 2 retries, and a failure alert; ``extra`` adds to them."""
    return {"owner": owner, "retries": 2, "retry_delay": retry_delay, "on_failure_callback": task_failure_alert,
            **extra}


def task_store(config, *, identity: str):
    """The object store of a task (the one task-context helper), acting as the task's component ``identity``
    (``ingestion``, ``training``: see pipelines/identities.py and docs/SECURITY.md; with no per-component
    credentials configured, the worker's AWS_* credentials or instance role). Tasks load the config with
    ``pipelines.config.load_config()`` and pass it in."""
    from pipelines.storage import open_store

    return open_store(config, identity=identity)


def curated_assets():
    """The schedule 'any domain's curated data was published': one Asset per configured domain, OR-ed.

    Reads the config file at parse time (yaml only, no network). Name-only assets: an Asset URI with a
    scheme makes DAG parsing load every provider's URI normalizers (boto3 included).
    """
    from airflow.sdk import Asset

    from pipelines.config import load_config

    assets = [Asset(name=f"curated_{d}") for d in sorted(load_config().domains)]
    schedule = assets[0]
    for asset in assets[1:]:
        schedule = schedule | asset
    return schedule


def who() -> str:
    """Who this run acts for: the DAG run's triggering user when known, else the scheduler."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    dag_run = context.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None) if dag_run is not None else None
    return f"airflow:{user or 'scheduler'}:{context['dag'].dag_id}"


def _seconds_since(start: Any, end: Any = None) -> float | None:
    import datetime as dt

    if not isinstance(start, dt.datetime):
        return None
    end = end if isinstance(end, dt.datetime) else dt.datetime.now(dt.timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.timezone.utc)
    return (end - start).total_seconds()


def task_sla_alert(context: dict[str, Any]) -> None:
    """on_success_callback, SLA-style (Airflow 3 removed SLAs): alert when a task, or the run at a leaf task,
    took longer than ``ops.task_minutes`` / ``ops.run_minutes``, through the same notifier as failures and serving.

    A run that hangs never succeeds: ``task_timeout`` (``execution_timeout``) turns that into a failure alert.
    Never raises: a broken alert must not fail a task that succeeded.
    """
    import logging

    try:
        from pipelines.config import load_config
        from pipelines.ops import alert_breaches, check_durations

        ti = context.get("task_instance") or context.get("ti")
        task = context.get("task")
        dag_run = context.get("dag_run")
        config = load_config()
        breaches = check_durations(
            sla=config.ops.sla, dag_id=getattr(ti, "dag_id", "?"), task_id=getattr(ti, "task_id", "?"),
            run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "?")),
            task_seconds=_seconds_since(getattr(ti, "start_date", None), getattr(ti, "end_date", None)),
            run_seconds=_seconds_since(getattr(dag_run, "start_date", None)),
            is_leaf=not getattr(task, "downstream_task_ids", None))
        alert_breaches(breaches, alerts=config.alerts)
    except Exception:  # noqa: BLE001 - see docstring
        logging.getLogger("mlops_airflow").exception("SLA-style duration check failed")


def task_timeout(dag_id: str):
    """``execution_timeout`` for a DAG's tasks: ``ops.task_timeout_minutes`` (read at parse time, YAML only)."""
    import datetime as dt

    from pipelines.config import load_config

    return dt.timedelta(minutes=load_config().ops.sla.for_dag(dag_id).task_timeout_minutes)
