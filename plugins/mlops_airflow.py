"""Airflow-specific glue shared by the DAGs: failure alerts and the object store of a task.

Lives in plugins/ (on sys.path for DAGs and tasks); keeps imports light at module level.
"""

from __future__ import annotations

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


def task_store(config):
    """The object store a task uses: boto3 with the worker's AWS_* credentials (or an instance role)."""
    from pipelines.storage import open_store

    return open_store(config.storage)
