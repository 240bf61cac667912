"""Operational thresholds: GPU temperature, model accuracy drop, API latency p95 -> alerts.

Readings are passed in (the serving API knows its latencies, the artifacts stage its metrics); GPU
temperatures are read through NVML (``pynvml`` from ``nvidia-ml-py``) when no reading is given. A
host without a GPU or without the NVML library yields no reading and no error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from pipelines.config import AlertsConfig
from pipelines.config.ops import Thresholds  # the ``ops`` section's monitor thresholds (re-exported)

log = logging.getLogger("pipelines.monitor")


@dataclass(frozen=True)
class Breach:
    """One threshold crossed (what ``check_thresholds`` alerted about)."""

    metric: str
    value: float
    threshold: float
    title: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def read_gpu_temperatures() -> dict[int, float]:
    """Core temperature (Celsius) of every GPU NVML sees; ``{}`` when there is no GPU or no NVML."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        log.debug("NVML unavailable: %s", exc)
        return {}
    try:
        out = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            out[index] = float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        return out
    except Exception as exc:  # noqa: BLE001 - a GPU that cannot be read is no reading, not a crash
        log.warning("NVML temperature read failed: %s", exc)
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def relative_drop(*, baseline: float, current: float) -> float:
    """``(baseline - current) / baseline``; 0 when the metric did not fall."""
    if baseline <= 0:
        raise ValueError(f"baseline={baseline}: a relative drop needs a positive baseline")
    return max(0.0, (baseline - current) / baseline)


def find_breaches(*, thresholds: Thresholds = Thresholds(), gpu_temperatures: Mapping[int, float] | None = None,
                  baseline_accuracy: float | None = None, accuracy: float | None = None,
                  latencies_ms: Sequence[float] | None = None, api_p95_ms: float | None = None,
                  where: str = "") -> list[Breach]:
    """The thresholds crossed by the given readings (pure; missing readings are skipped).

    Args:
        thresholds: the limits.
        gpu_temperatures: Celsius by GPU index.
        baseline_accuracy: production (or previous) accuracy on the held-out split.
        accuracy: the current accuracy on the same split.
        latencies_ms: request latencies to take the p95 of (or pass ``api_p95_ms``).
        api_p95_ms: an already computed p95.
        where: prefix for titles (e.g. the host or the domain).
    """
    at = f"{where}: " if where else ""
    out = []
    for index, temp in sorted((gpu_temperatures or {}).items()):
        if temp > thresholds.gpu_temperature_c:
            out.append(Breach("gpu_temperature_c", temp, thresholds.gpu_temperature_c,
                              f"{at}GPU {index} at {temp:.0f} C",
                              f"GPU {index} is at {temp:.0f} C (limit {thresholds.gpu_temperature_c:.0f} C). "
                              "Check cooling and the job's power limit; training may throttle."))
    if baseline_accuracy is not None and accuracy is not None:
        drop = relative_drop(baseline=baseline_accuracy, current=accuracy)
        if round(drop, 9) > thresholds.accuracy_drop:  # 0.9 -> 0.855 is exactly 5%, not 5.0000000000000004%
            out.append(Breach("accuracy_drop", round(drop, 6), thresholds.accuracy_drop,
                              f"{at}accuracy dropped {drop:.1%}",
                              f"Accuracy fell from {baseline_accuracy:.4f} to {accuracy:.4f} ({drop:.1%}, limit "
                              f"{thresholds.accuracy_drop:.0%}). Consider rolling production back to the previous model."))
    if api_p95_ms is None and latencies_ms:
        api_p95_ms = percentile(latencies_ms, 95)
    if api_p95_ms is not None and api_p95_ms > thresholds.api_p95_ms:
        out.append(Breach("api_p95_ms", round(api_p95_ms, 3), thresholds.api_p95_ms,
                          f"{at}API p95 latency {api_p95_ms:.0f} ms",
                          f"The serving API's p95 latency is {api_p95_ms:.0f} ms (limit {thresholds.api_p95_ms:.0f} ms)."))
    return out


def check_thresholds(*, alerts: AlertsConfig, thresholds: Thresholds = Thresholds(),
                     gpu_temperatures: Mapping[int, float] | None = None, read_gpu: bool = True,
                     baseline_accuracy: float | None = None, accuracy: float | None = None,
                     latencies_ms: Sequence[float] | None = None, api_p95_ms: float | None = None,
                     where: str = "", send: Callable[..., object] | None = None) -> list[Breach]:
    """Send one alert per crossed threshold and return the breaches alerted.

    Args:
        alerts: the alert channels (``config.alerts``).
        thresholds: the limits.
        gpu_temperatures: readings; None reads NVML when ``read_gpu`` (no GPU: no reading).
        read_gpu: read NVML when ``gpu_temperatures`` is None.
        baseline_accuracy: see ``find_breaches``.
        accuracy: see ``find_breaches``.
        latencies_ms: see ``find_breaches``.
        api_p95_ms: see ``find_breaches``.
        where: prefix for alert titles.
        send: the sender (default ``pipelines.alerts.send_alert``).
    """
    if send is None:
        from pipelines.alerts import send_alert as send
    if gpu_temperatures is None and read_gpu:
        gpu_temperatures = read_gpu_temperatures()
    breaches = find_breaches(thresholds=thresholds, gpu_temperatures=gpu_temperatures,
                             baseline_accuracy=baseline_accuracy, accuracy=accuracy, latencies_ms=latencies_ms,
                             api_p95_ms=api_p95_ms, where=where)
    for breach in breaches:
        send(alerts, title=breach.title, text=breach.text)
    return breaches
