"""The ``ops`` section: how long DAG runs and tasks may take, and the monitor's alert thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipelines.config.base import ConfigError

SLA_KEYS = ("run_minutes", "task_minutes", "task_timeout_minutes")


@dataclass(frozen=True)
class SlaConfig:
    """How long DAG runs and tasks may take before on-call is told (Airflow 3 has no SLAs).

    ``ops:`` section of ``config/pipeline.yaml``; ``dags.<dag_id>`` overrides keys per DAG.
    """

    run_minutes: float = 120.0          # a run still going after this long -> "run took longer than expected"
    task_minutes: float = 60.0          # one task that took longer -> "task took longer than expected"
    task_timeout_minutes: float = 360.0  # tasks are killed (and fail, with the failure alert) after this
    dags: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in SLA_KEYS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"ops.{name}={value!r}: use a positive number of minutes")
        if self.task_minutes >= self.task_timeout_minutes:
            raise ConfigError(f"ops.task_minutes={self.task_minutes} must be below ops.task_timeout_minutes="
                              f"{self.task_timeout_minutes} (the alert has to come before the kill)")
        if not isinstance(self.dags, Mapping):
            raise ConfigError("ops.dags: expected a mapping of dag_id -> {run_minutes, task_minutes, ...}")
        for dag_id, values in self.dags.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"ops.dags.{dag_id}: expected a mapping")
            bad = set(values) - set(SLA_KEYS)
            if bad:
                raise ConfigError(f"ops.dags.{dag_id}: unknown key(s) {sorted(bad)}; use run_minutes, task_minutes, "
                                  "task_timeout_minutes")

    def for_dag(self, dag_id: str) -> SlaConfig:
        """The limits of one DAG (its ``dags.<dag_id>`` block over the defaults)."""
        override = dict(self.dags.get(dag_id) or {})
        if not override:
            return self
        return SlaConfig(**{**{k: getattr(self, k) for k in SLA_KEYS}, **override})


@dataclass(frozen=True)
class Thresholds:
    """When the monitor alerts (pipelines.monitor).

    Attributes:
        gpu_temperature_c: alert above this GPU core temperature (Celsius).
        accuracy_drop: alert when accuracy fell by more than this fraction of the baseline
            (relative, like the promotion gate's ``max_drop``: 0.05 = 5%).
        api_p95_ms: alert when the 95th-percentile API latency exceeds this (milliseconds).
    """

    gpu_temperature_c: float = 85.0
    accuracy_drop: float = 0.05
    api_p95_ms: float = 500.0

    def __post_init__(self) -> None:
        if not 0 < self.gpu_temperature_c < 150:
            raise ConfigError(f"ops.gpu_temperature_c={self.gpu_temperature_c}: use a temperature in Celsius (0-150)")
        if not 0 < self.accuracy_drop < 1:
            raise ConfigError(f"ops.accuracy_drop={self.accuracy_drop}: use a fraction, e.g. 0.05 for 5%")
        if not self.api_p95_ms > 0:
            raise ConfigError(f"api_p95_ms={self.api_p95_ms}: use a positive number of milliseconds "
                              "(serving.p95_alert_ms)")


@dataclass(frozen=True)
class OpsConfig:
    """The ``ops:`` section: the SLA-style limits and the monitor's GPU temperature and accuracy-drop thresholds.

    The API latency threshold is the serving section's ``p95_alert_ms`` (one number, one place):
    ``PipelineConfig.thresholds`` puts the three together.
    """

    run_minutes: float = SlaConfig.run_minutes
    task_minutes: float = SlaConfig.task_minutes
    task_timeout_minutes: float = SlaConfig.task_timeout_minutes
    dags: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    gpu_temperature_c: float = Thresholds.gpu_temperature_c
    accuracy_drop: float = Thresholds.accuracy_drop

    def __post_init__(self) -> None:
        self.sla  # noqa: B018 - validates the limits
        Thresholds(gpu_temperature_c=self.gpu_temperature_c, accuracy_drop=self.accuracy_drop)

    @property
    def sla(self) -> SlaConfig:
        """The SLA-style limits."""
        return SlaConfig(**{k: getattr(self, k) for k in SLA_KEYS}, dags=self.dags)

    def thresholds(self, *, api_p95_ms: float = Thresholds.api_p95_ms) -> Thresholds:
        """The monitor's thresholds with the given API latency limit."""
        return Thresholds(gpu_temperature_c=self.gpu_temperature_c, accuracy_drop=self.accuracy_drop,
                          api_p95_ms=api_p95_ms)
