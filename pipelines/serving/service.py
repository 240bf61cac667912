"""The model service: which model each domain serves, hot reload from the production pointers, batching.

Reload protocol, per domain and poll:

1. read the newest promotion record (production); nothing to do if its number was already handled;
2. download the artifact it names and verify every file against the manifest, and its id against the
   files map (``source.fetch_artifact``: ``pipelines.artifacts``);
3. load it with ``pipelines.modeling.load_model`` (optionally INT8) and run one warm-up pass, next to
   the model still serving;
4. with a generation engine configured (``engine``, :mod:`pipelines.serving.engine`), start it on the verified
   causal LM (transformers backend) or load the verified folder as a LoRA adapter (vLLM backend); a failure
   refuses the artifact like a failed load;
5. swap: one assignment of the domain's ``Served`` record (model and engine together), so every batch runs on
   exactly one model and reports that model's version; the replaced engine is closed (its adapter unloaded)
   once its in-flight requests had their time.

A refused artifact (no manifest, a missing file, a digest mismatch, not loadable) is logged, alerted and
remembered; the old model keeps serving. A store error is retried on the next poll. Only promotion
numbers above the one handled are applied, so the served version follows the pointer's records in
order: a rollback (a newer record naming an older artifact) is applied like a promotion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import AlertsConfig
from pipelines.serving.auth import TokenSet
from pipelines.serving.batching import DynamicBatcher
from pipelines.serving.config import ServingConfig
from pipelines.modeling import EOS
from pipelines.serving.engine import EngineConfig, EngineError, TransformersEngine, open_engine
from pipelines.serving.feedback import RequestLog
from pipelines.serving.inference import Generation, Served, classify, generate
from pipelines.serving.metrics import LatencyMonitor, Metrics
from pipelines.serving.screening import InputFilter, OutputScreen
from pipelines.serving.source import MODELS_PREFIX, ArtifactRefused, fetch_artifact, load_servable, production
from pipelines.storage import ObjectStore, StorageError

log = logging.getLogger("pipelines.serving")


class ModelService:
    """Everything the HTTP layer needs: served models, batchers, tokens, filters, feedback memory, metrics.

    Args:
        config: the serving config.
        store: where the production pointers and artifacts are.
        domains: ``{domain: task}`` to serve.
        tokens: accepted bearer tokens.
        alerts: alert channels (``pipelines.alerts.send_alert``).
        input_filter: the lexicon check of inputs (None: no check).
        output_screen: the trained screen of generated answers (None: none).
        landing_prefix: ``storage.landing_prefix`` (feedback goes under ``<prefix>/feedback/``).
        alert: the alert function (``send_alert``; injectable for tests).
        models_prefix: key prefix of model objects (``artifacts.prefix``).
        engine: the continuous-batching engine causal-LM domains generate on (None: batched HF ``generate``).
    """

    def __init__(self, *, config: ServingConfig, store: ObjectStore, domains: dict[str, str], tokens: TokenSet,
                 alerts: AlertsConfig = AlertsConfig(), input_filter: InputFilter | None = None,
                 output_screen: OutputScreen | None = None, landing_prefix: str = "landing",
                 alert: Callable[..., Any] | None = None, models_prefix: str = MODELS_PREFIX,
                 engine: EngineConfig | None = None) -> None:
        from pipelines.alerts import send_alert

        self.config = config
        self.store = store
        self.domains = dict(domains)
        self.tokens = tokens
        self.alerts = alerts
        self.input_filter = input_filter
        self.output_screen = output_screen
        self.landing_prefix = landing_prefix
        self.models_prefix = models_prefix
        self.engine_config = engine
        self._alert = alert or send_alert
        self.metrics = Metrics()
        self.latency = LatencyMonitor(threshold_ms=config.p95_alert_ms, window_seconds=config.window_seconds,
                                      min_requests=config.min_window_requests)
        self.requests = RequestLog(max_entries=config.feedback_max_entries, ttl_seconds=config.feedback_ttl_seconds)
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else _temp_cache()
        self.served: dict[str, Served] = {}
        self._handled: dict[str, int] = {}  # newest promotion number applied or refused, per domain
        self.refused: dict[str, dict[str, Any]] = {}  # newest refused promotion above the one served, per domain
        self._store_errors: set[str] = set()  # domains whose last poll failed (alert once per outage)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._run_lock = threading.Lock()  # one forward pass at a time, whichever domain
        self._batchers: dict[str, DynamicBatcher] = {}

    # ------------------------------------------------------------------ reload

    def refresh(self) -> dict[str, str]:
        """Poll every domain's production pointer once; ``{domain: outcome}``.

        Outcomes: ``none`` (never promoted), ``current``, ``loaded``, ``switched`` (same artifact, newer record),
        ``refused`` (old model keeps serving) or ``error`` (store unreachable; retried next poll).
        """
        with self._reload_lock:
            return {domain: self._refresh_domain(domain) for domain in self.domains}

    def _refresh_domain(self, domain: str) -> str:
        try:
            promotion = production(self.store, domain, prefix=self.models_prefix)
        except ArtifactRefused as exc:
            return self._refuse(domain, None, str(exc))
        except (StorageError, OSError, ValueError) as exc:
            return self._store_error(domain, exc)
        self._store_errors.discard(domain)
        if promotion is None:
            return "none"
        if promotion.number <= self._handled.get(domain, 0):
            return "current"
        current = self.served.get(domain)
        if current is not None and current.artifact_id == promotion.artifact_id:
            self._swap(domain, Served(domain, promotion.version or current.version, current.artifact_id,
                                      promotion.number, current.loaded, current.engine))
            return "switched"
        try:
            folder = fetch_artifact(self.store, domain=domain, artifact_id=promotion.artifact_id,
                                    cache_dir=self.cache_dir, prefix=self.models_prefix)
            loaded = load_servable(folder, quantize_int8=self.config.quantize_int8)
            if loaded.task != self.domains[domain]:
                raise ArtifactRefused(f"artifact task {loaded.task!r} but domain {domain} is {self.domains[domain]!r}")
            self._warm_up(loaded)
            version = promotion.version or str(loaded.manifest.get("version") or promotion.artifact_id)
            # Only after every file was verified; one adapter name per promotion record, so a rollback to a version
            # still in its grace period never has its adapter unloaded by the earlier swap's delayed release.
            engine = self._start_engine(f"{domain}-{version}-p{promotion.number}", loaded, folder)
        except ArtifactRefused as exc:
            return self._refuse(domain, promotion, str(exc))
        except (StorageError, OSError) as exc:
            return self._store_error(domain, exc)
        self._swap(domain, Served(domain, version, promotion.artifact_id, promotion.number, loaded, engine))
        log.info("serving %s %s (artifact %s, promotion %d, %s)", domain, version, promotion.artifact_id,
                 promotion.number, promotion.action)
        self.metrics.reloads.labels(domain, "loaded").inc()
        return "loaded"

    def _start_engine(self, name: str, loaded: Any, folder: Path) -> Any:
        """The engine generating for a verified causal LM (None: no engine configured, or not a causal LM)."""
        if self.engine_config is None or loaded.task != "causal_lm":
            return None
        try:
            if self.engine_config.backend == "vllm":
                engine = open_engine(self.engine_config)
                engine.load_adapter(name, str(folder))
                return _Adapter(engine, name)
            tokenizer = loaded.tokenizer
            return TransformersEngine(loaded.model, tokenizer, config=self.engine_config,
                                      eos_token_id=tokenizer.convert_tokens_to_ids(EOS))
        except Exception as exc:  # noqa: BLE001 - an engine that cannot start on it means the artifact cannot serve
            raise ArtifactRefused(f"the generation engine refused it: {type(exc).__name__}: {exc}") from None

    def _swap(self, domain: str, served: Served) -> None:
        old = self.served.get(domain)
        self.served[domain] = served  # one reference assignment: batches see the old or the new model, whole
        if old is not None and old.engine is not None and old.engine is not served.engine:
            # Requests already on the old engine finish first (at most its timeout), then it is released.
            timer = threading.Timer(old.engine.config.timeout_s, old.engine.close)
            timer.daemon = True
            timer.start()
        self._handled[domain] = served.promotion
        self.refused.pop(domain, None)
        self.metrics.set_model(domain, version=served.version, artifact_id=served.artifact_id,
                               promotion=served.promotion)

    def _warm_up(self, loaded: Any) -> None:
        try:
            if loaded.task == "classification":
                classify(loaded, ["warm up"])
            else:
                generate(loaded, ["warm up"], [1])
        except Exception as exc:  # noqa: BLE001 - any failure here means the artifact cannot serve
            raise ArtifactRefused(f"warm-up inference failed: {type(exc).__name__}: {exc}") from None

    def _refuse(self, domain: str, promotion: Any, reason: str) -> str:
        if promotion is not None:
            self._handled[domain] = promotion.number  # do not download a refused artifact again every poll
        self.refused[domain] = {"promotion": promotion.number if promotion else None,
                                "artifact_id": promotion.artifact_id if promotion else None, "reason": reason}
        current = self.served.get(domain)
        keeps = f"{current.version} (artifact {current.artifact_id}) keeps serving" if current else "nothing is served"
        what = f"promotion {promotion.number} (artifact {promotion.artifact_id})" if promotion else "production pointer"
        log.error("refused %s of %s: %s; %s", what, domain, reason, keeps)
        self.metrics.reloads.labels(domain, "refused").inc()
        self._send_alert(f"serving: refused model for {domain}", f"{what} was refused: {reason}. {keeps}.")
        return "refused"

    def _store_error(self, domain: str, exc: Exception) -> str:
        log.warning("could not read the production pointer of %s: %s", domain, exc)
        self.metrics.reloads.labels(domain, "error").inc()
        if domain not in self._store_errors:
            self._store_errors.add(domain)
            self._send_alert(f"serving: cannot reach models of {domain}", f"{type(exc).__name__}: {exc}; retrying")
        return "error"

    def _send_alert(self, title: str, text: str) -> None:
        try:
            self._alert(self.alerts, title=title, text=text)
        except Exception as exc:  # noqa: BLE001 - an alert channel must never stop the service
            log.error("alert failed: %s", exc)

    def check_latency(self) -> None:
        """Alert (once per excursion) when the window's p95 latency exceeds the threshold."""
        p95, _n = self.latency.p95_ms()
        if p95 is not None:
            self.metrics.p95.set(p95 / 1000.0)
        alarm = self.latency.check()
        if alarm is not None:
            log.warning("p95 latency %.1f ms over %d requests exceeds %.0f ms", alarm.p95_ms, alarm.requests,
                        alarm.threshold_ms)
            self._send_alert("serving: p95 latency above threshold",
                             f"p95 {alarm.p95_ms} ms over the last {alarm.window_seconds:.0f} s ({alarm.requests} "
                             f"requests) exceeds {alarm.threshold_ms:.0f} ms")

    def start(self) -> None:
        """Load what production names now, then keep watching in a background thread."""
        self.refresh()
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.refresh()
                self.check_latency()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad poll
                log.exception("model watcher poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        for batcher in list(self._batchers.values()):
            batcher.close()
        self.stop_engines()

    @property
    def ready(self) -> bool:
        return all(d in self.served for d in self.domains)

    def describe(self) -> dict[str, Any]:
        """What is served, per domain, and any newer production record that was refused (``/readyz`` with a token).

        ``models`` maps each domain to its served version (None: nothing yet); ``served`` names the artifact and
        promotion record behind it, which after a refused promotion is not the one the production pointer names;
        ``refused`` holds that refused record and why.
        """
        served = {d: ({"version": s.version, "artifact_id": s.artifact_id, "promotion": s.promotion}
                      if (s := self.served.get(d)) else None) for d in sorted(self.domains)}
        return {"models": {d: (s["version"] if s else None) for d, s in served.items()}, "served": served,
                "refused": {d: dict(r) for d, r in sorted(self.refused.items())}}

    # ------------------------------------------------------------------ inference

    def batcher(self, domain: str) -> DynamicBatcher:
        batcher = self._batchers.get(domain)
        if batcher is None:
            run = self._run_classify if self.domains[domain] == "classification" else self._run_generate
            batcher = DynamicBatcher(lambda items, d=domain, f=run: f(d, items),
                                     max_batch_size=self.config.max_batch_size, max_wait_ms=self.config.max_wait_ms,
                                     run_lock=self._run_lock, name=f"inference-{domain}",
                                     on_batch=lambda n, _s, d=domain: self.metrics.batch_size.labels(d).observe(n))
            self._batchers[domain] = batcher
        return batcher

    def _threads(self) -> None:
        import torch

        if torch.get_num_threads() != self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)

    def _run_classify(self, domain: str, texts: Sequence[str]) -> list[tuple[Served, Any]]:
        self._threads()
        served = self.served[domain]  # one model for the whole batch
        return [(served, p) for p in classify(served.loaded, texts)]

    def _run_generate(self, domain: str, items: Sequence[tuple[str, int]]) -> list[tuple[Served, Any, Any]]:
        self._threads()
        served = self.served[domain]
        outputs = generate(served.loaded, [p for p, _ in items], [n for _, n in items])
        if self.output_screen is None:
            return [(served, o, None) for o in outputs]
        screened = self.output_screen.screen([o.text for o in outputs])
        return [(served, o, s) for o, s in zip(outputs, screened)]

    def generate_on_engine(self, domain: str, prompt: str, max_new_tokens: int) -> tuple[Served, Any, Any]:
        """One answer from the domain's engine (continuous batching: no fixed batch to wait for), screened.

        Raises:
            EngineError: the engine failed the request.
        """
        served = self.served[domain]
        answer = served.engine.complete(prompt, max_tokens=max_new_tokens)
        output = Generation(text=answer.text, tokens=answer.completion_tokens)
        screen = self.output_screen.screen([output.text])[0] if self.output_screen is not None else None
        return served, output, screen

    def stop_engines(self) -> None:
        """Close the engines of the served models (shutdown)."""
        for served in list(self.served.values()):
            if served.engine is not None:
                served.engine.close()

    async def aclose(self) -> None:
        for batcher in self._batchers.values():
            await batcher.aclose()
        self._batchers.clear()


class _Adapter:
    """A vLLM client bound to one loaded adapter: ``complete`` asks for it, ``close`` unloads it (rollback)."""

    def __init__(self, engine: Any, name: str) -> None:
        self.engine, self.name, self.config = engine, name, engine.config

    def complete(self, prompt: str, *, max_tokens: int) -> Any:
        return self.engine.complete(prompt, max_tokens=max_tokens, adapter=self.name)

    def close(self) -> None:
        try:
            self.engine.unload_adapter(self.name)
        except EngineError as exc:  # the server restarted without it: nothing left to unload
            log.warning("unloading adapter %s: %s", self.name, exc)


def _temp_cache() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "mlops-serving-artifacts"
