"""On-call operations: quarantine inspection and release, one-partition reruns, run-duration (SLA-style) alerts.

The procedures themselves are in ``docs/RUNBOOK.md``; this module is what its ``python -m pipelines ops``
commands call. The quarantine operations live in ``pipelines.quarantine`` (ingestion executes console
release requests through them, below this module) and are re-exported here, the on-call entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import AlertsConfig, PipelineConfig
from pipelines.config.ops import SlaConfig
from pipelines.partition import Interval
from pipelines.quarantine import (  # noqa: F401  (re-exported: the on-call API)
    FEEDBACK, RELEASE_ACTION, OpsError, QuarantinedRecord, QuarantineSet, ReleaseResult, list_quarantine,
    original_record, quarantine_id, quarantine_intervals, read_quarantine, release_quarantined, show_quarantined,
)
from pipelines.storage import ObjectStore


# ----------------------------------------------------------------------------------------- rerun
def rerun_partition(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval,
                    who: str = "ops", run_key: str = "ops") -> dict[str, Any]:
    """Rerun one partition in this process (what ``python -m pipelines ingest --domain D --interval I`` does).

    Safe at any time: unchanged inputs compute the same version and write no new commit; later weeks
    this one displaces are re-published.

    Raises:
        pipelines.weekly.ValidationFailed: the suite failed; the partition was not published.
        ConfigError: unknown domain.
    """
    from pipelines.weekly import PartitionRef, process_partition, republish_displaced, route_feedback

    config.domain(domain)
    interval = interval if isinstance(interval, Interval) else Interval.parse(interval)
    part = PartitionRef(domain=domain, interval=interval, run_key=run_key)
    route_feedback(config=config, store=store, interval=part.interval, run_key=run_key)
    result = process_partition(config=config, store=store, part=part, who=who)
    out = {k: result.get(k) for k in ("domain", "interval", "published", "version", "commit", "counts", "reason")}
    out["domain"], out["interval"] = domain, part.interval.name
    targets = result.get("republish", [])
    out["republished"] = republish_displaced(config=config, store=store, targets=targets, run_key=run_key) \
        if targets else []
    return out


# ----------------------------------------------------------------------------- SLA-style alerts
@dataclass(frozen=True)
class SlaBreach:
    """A run or a task that took longer than its limit."""

    scope: str  # "task" | "run"
    dag_id: str
    task_id: str
    run_id: str
    seconds: float
    limit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_durations(*, sla: SlaConfig, dag_id: str, task_id: str, run_id: str, task_seconds: float | None,
                    run_seconds: float | None, is_leaf: bool) -> list[SlaBreach]:
    """Which limits a finished task broke: its own duration, and (for a leaf task) the run's so far.

    Only leaf tasks check the run: they finish last, so the run's elapsed time is (nearly) its duration.

    Args:
        sla: the limits (``config.ops.sla``; ``for_dag(dag_id)`` is applied here).
        dag_id: the DAG.
        task_id: the task that finished.
        run_id: the DAG run.
        task_seconds: the task's duration (None if unknown).
        run_seconds: seconds since the run started (None if unknown).
        is_leaf: whether the task has no downstream task.
    """
    limits = sla.for_dag(dag_id)
    out = []
    if task_seconds is not None and task_seconds > limits.task_minutes * 60:
        out.append(SlaBreach("task", dag_id, task_id, run_id, round(task_seconds, 1), limits.task_minutes * 60))
    if is_leaf and run_seconds is not None and run_seconds > limits.run_minutes * 60:
        out.append(SlaBreach("run", dag_id, task_id, run_id, round(run_seconds, 1), limits.run_minutes * 60))
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def alert_breaches(breaches: Sequence[SlaBreach], *, alerts: AlertsConfig):
    """Send one alert for the breaches through ``pipelines.alerts.send_alert`` (the serving API's notifier too).

    Returns:
        The ``AlertResult``, or None when there was nothing to send.
    """
    from pipelines.alerts import send_alert

    if not breaches:
        return None
    first = breaches[0]
    lines = [f"- DAG: `{first.dag_id}`", f"- run: `{first.run_id}`"]
    for b in breaches:
        what = f"task `{b.task_id}`" if b.scope == "task" else f"the run (at task `{b.task_id}`)"
        lines.append(f"- {what} took {_minutes(b.seconds)}, expected at most {_minutes(b.limit_seconds)}")
    lines.append("- see docs/RUNBOOK.md, 'A run is slow'")
    scope = "run" if any(b.scope == "run" for b in breaches) else "task"
    title = f"{first.dag_id}: {scope} took longer than expected"
    return send_alert(alerts, title=title, text="\n".join(lines))
