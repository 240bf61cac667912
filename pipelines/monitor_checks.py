"""The daily operational checks (``ops_health`` DAG): each alerts through ``pipelines.alerts`` and returns a summary."""

from __future__ import annotations

import logging
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.storage import ObjectStore

log = logging.getLogger("pipelines.monitor_checks")


def key_age(*, config: PipelineConfig, send=None) -> dict[str, Any]:
    """Alert when the active KEK is older than ``security.kek_max_age_days``; skipped while encryption is off."""
    from pipelines.security.keyring import Keyring
    from pipelines.security.rotation import check_kek_age

    security = config.security
    if not security.enabled:
        return {"checked": False, "reason": "security.enabled is false"}
    age = check_kek_age(Keyring.load(security.keyring_file), max_age_days=security.kek_max_age_days,
                        alerts=config.alerts, send=send)
    return {"checked": True, **age.to_dict()}


def gpu_temperature(*, config: PipelineConfig, send=None, readings: dict[int, float] | None = None) -> dict[str, Any]:
    """Alert for every GPU of this host above ``ops.gpu_temperature_c``; no GPU or no NVML means no reading."""
    from pipelines.monitor import check_thresholds, read_gpu_temperatures

    readings = read_gpu_temperatures() if readings is None else readings
    breaches = check_thresholds(alerts=config.alerts, thresholds=config.thresholds, gpu_temperatures=readings,
                                read_gpu=False, where="ops_health", send=send)
    return {"gpus": {str(k): v for k, v in readings.items()}, "alerts": len(breaches)}


def model_accuracy(*, config: PipelineConfig, store: ObjectStore, send=None) -> dict[str, Any]:
    """Alert for each domain whose production classifier is more than ``ops.accuracy_drop`` (relative) below the
    model it replaced.

    Both numbers come from the production manifest: its accuracy and its ``baseline`` (the model it replaced,
    evaluated by the same training run on the same held-out split).
    """
    from pipelines.artifacts import current_production, load_ref, read_artifact_manifest
    from pipelines.monitor import check_thresholds

    prefix = config.artifacts.prefix
    out: dict[str, Any] = {}
    for domain in sorted(config.domains):
        record = current_production(store, domain, prefix=prefix)
        if record is None:
            continue
        metrics = read_artifact_manifest(store, load_ref(store, domain, record.artifact_id, prefix=prefix)).get(
            "metrics") or {}
        baseline = (metrics.get("baseline") or {}).get("accuracy")
        current = metrics.get("accuracy")
        if baseline is None or current is None:
            continue
        breaches = check_thresholds(alerts=config.alerts, thresholds=config.thresholds, read_gpu=False,
                                    baseline_accuracy=float(baseline), accuracy=float(current),
                                    where=f"{domain} production {record.version}", send=send)
        out[domain] = {"accuracy": current, "baseline": baseline, "alerts": len(breaches)}
    return out
