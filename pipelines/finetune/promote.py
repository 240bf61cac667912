"""Step 3 of a run: the evaluation gate against production, then promotion or an alert."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from pipelines.alerts import send_alert
from pipelines.artifacts import evaluate_candidate, load_ref, promote
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import TrainedRun
from pipelines.finetune.inputs import slot_configs
from pipelines.security.audit import audit_hook
from pipelines.storage import ObjectStore

log = logging.getLogger("pipelines.finetune")
_TASK_METRICS = {"classification": ("accuracy", True), "causal_lm": ("perplexity", False), "forecast": ("mae", False)}
_LOWER_IS_BETTER = {"perplexity", "loss", "mae"}


def gate_metric(*, config: PipelineConfig, domain: str) -> tuple[str, bool]:
    """The metric a slot's gate compares: ``training.gate_metric`` or the task's (accuracy for classification).

    A forecaster slot is always gated on ``mae`` (lower is better): its domain's ``gate_metric`` names a
    metric of the domain's own task.
    """
    slot, training, _privacy, _artifacts, _max_drop = slot_configs(config=config, name=domain)
    if slot.is_forecast:
        return _TASK_METRICS["forecast"]
    if not training.gate_metric:
        return _TASK_METRICS[slot.task]
    return str(training.gate_metric), str(training.gate_metric) not in _LOWER_IS_BETTER


def _audit(config: PipelineConfig, store: ObjectStore):
    return audit_hook(store, prefix=config.security.audit_prefix, who="pipelines.finetune")


def _gate_dict(decision: Any) -> dict[str, Any]:
    return asdict(decision) if is_dataclass(decision) else dict(decision)


def promote_run(*, config: PipelineConfig, store: ObjectStore, trained: TrainedRun | Mapping[str, Any], who: str,
                audit=None) -> TrainedRun:
    """Gate the trained artifact against production and promote it, or alert and leave production as it is.

    Returns:
        The trained run with ``promoted``, ``gate`` (the decision) and ``promotion`` (the record's number) set.
    """
    trained = trained if isinstance(trained, TrainedRun) else TrainedRun.from_dict(trained)
    if trained.skipped:
        return trained
    name = trained.domain
    slot, _training, _privacy, artifacts, max_drop = slot_configs(config=config, name=name)
    ref = load_ref(store, name, trained.artifact_id, prefix=artifacts.prefix)
    metric, higher = gate_metric(config=config, domain=name)
    # The candidate must beat the trivial baseline of its evaluation set by the task's configured margin.
    decision = evaluate_candidate(store, name, ref, max_drop=max_drop, metric=metric, higher_is_better=higher,
                                  prefix=artifacts.prefix, margin=artifacts.margin_for(slot.task),
                                  check_trivial=artifacts.trivial_gate)
    audit = audit if audit is not None else _audit(config, store)
    if not decision.passed:
        send_alert(config.alerts, title=f"{name}: model {ref.version} not promoted",
                   text=f"- run: `{trained.run_id}`\n- artifact: `{ref.artifact_id}`\n- gate: {decision.reason}\n"
                        "- production is unchanged")
        log.warning("gate refused %s: %s", ref.artifact_id, decision.reason)
        return trained.judged(promoted=False, gate=_gate_dict(decision))
    record = promote(store, name, ref, gate=decision, who=who, why=f"{trained.kind} run {trained.run_id}",
                     prefix=artifacts.prefix, audit=audit)
    log.info("promoted %s v%s (record %s)", ref.artifact_id, ref.version, getattr(record, "number", "?"))
    return trained.judged(promoted=True, gate=_gate_dict(decision), promotion=getattr(record, "number", None))
