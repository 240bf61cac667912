"""Prometheus metrics of one service instance, and the p95 latency alarm."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's metrics in their own registry (two services in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.latency = Histogram("serving_request_latency_seconds", "Request latency, auth to response",
                                 ["domain", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter("serving_requests_total", "Requests by outcome", ["domain", "endpoint", "code"],
                                registry=self.registry)
        self.batch_size = Histogram("serving_batch_size", "Requests per forward pass", ["domain"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.model_info = Gauge("serving_model_info", "1 for the model version a domain serves",
                                ["domain", "version", "artifact_id", "promotion"], registry=self.registry)
        self.reloads = Counter("serving_model_reloads_total", "Model loads by outcome (loaded, refused, error)",
                               ["domain", "outcome"], registry=self.registry)
        self.screened = Counter("serving_output_withheld_total", "Answers withheld by the output screen",
                                ["domain"], registry=self.registry)
        self.input_rejected = Counter("serving_input_sensitive_total", "Inputs holding a lexicon entry",
                                      ["domain", "action"], registry=self.registry)
        self.p95 = Gauge("serving_latency_p95_seconds", "p95 latency over the alert window", registry=self.registry)
        self._shown: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def set_model(self, domain: str, *, version: str, artifact_id: str, promotion: int) -> None:
        labels = (domain, version, artifact_id, str(promotion))
        with self._lock:
            old = self._shown.get(domain)
            if old is not None and old != labels:
                self.model_info.remove(*old)
            self.model_info.labels(*labels).set(1)
            self._shown[domain] = labels

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencyAlarm:
    p95_ms: float
    requests: int
    threshold_ms: float
    window_seconds: float


class LatencyMonitor:
    """p95 latency over a sliding time window; fires once when it crosses the threshold, re-arms below it."""

    def __init__(self, *, threshold_ms: float, window_seconds: float, min_requests: int,
                 clock: Callable[[], float] = time.monotonic, max_samples: int = 100_000) -> None:
        self.threshold_ms = threshold_ms
        self.window = window_seconds
        self.min_requests = min_requests
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._firing = False
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._samples.append((self.clock(), seconds))

    def p95_ms(self) -> tuple[float | None, int]:
        """The window's p95 in ms (None when empty) and its request count."""
        with self._lock:
            cutoff = self.clock() - self.window
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            values = [s for _t, s in self._samples]
        if not values:
            return None, 0
        return percentile(values, 95) * 1000.0, len(values)

    def check(self) -> LatencyAlarm | None:
        """An alarm when p95 first exceeds the threshold (None while it stays above or is below)."""
        p95, n = self.p95_ms()
        above = p95 is not None and n >= self.min_requests and p95 > self.threshold_ms
        with self._lock:
            fire = above and not self._firing
            self._firing = above
        return LatencyAlarm(round(p95, 1), n, self.threshold_ms, self.window) if fire else None
