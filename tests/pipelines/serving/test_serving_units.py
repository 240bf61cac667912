"""Pure parts of the service on a local folder store: config, tokens, batching, feedback, latency alarm, artifacts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import serving_helpers as h

from pipelines.config import ConfigError, load_config
from pipelines.serving.auth import TokenSet, load_tokens
from pipelines.serving.batching import BatcherClosed, DynamicBatcher
from pipelines.serving.config import ServingConfig, override_serving
from pipelines.serving.feedback import FeedbackError, RequestLog, feedback_record, write_feedback
from pipelines.serving.metrics import LatencyMonitor, percentile
from pipelines.serving.source import ArtifactRefused, fetch_artifact, load_servable, production
from pipelines.storage import LocalObjectStore


def test_config_defaults_env_override_and_errors(monkeypatch):
    monkeypatch.setenv("PIPELINE__SERVING__MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("PIPELINE__SERVING__DOMAINS", "legal,medical")
    config = load_config().serving
    overridden = override_serving(config=load_config(), port=9000, max_batch_size=None)  # None: not given on the CLI
    assert (overridden.port, overridden.max_batch_size) == (9000, 8)
    with pytest.raises(ConfigError, match=r"serving: unknown key\(s\) \['colour'\]"):
        override_serving(config=load_config(), colour="red")
    assert (config.max_batch_size, config.domains, config.p95_alert_ms, config.max_wait_ms) == (8, ("legal", "medical"), 500.0, 5.0)
    with pytest.raises(ConfigError, match="serving.max_batch_size=0 must be a positive integer"):
        ServingConfig(max_batch_size=0)
    with pytest.raises(ConfigError, match="tls_cert and serving.tls_key go together"):
        ServingConfig(tls_cert="x.pem")
    with pytest.raises(ConfigError, match="input_policy='drop'"):
        ServingConfig(input_policy="drop")
    monkeypatch.setenv("PIPELINE__SERVING__DOMAINS", "nope")
    with pytest.raises(ConfigError, match="unknown domain 'nope'"):
        load_config()
    monkeypatch.setenv("PIPELINE__SERVING__BOGUS", "1")
    with pytest.raises(ConfigError, match=r"serving: unknown key\(s\) \['bogus'\]"):
        load_config()


def test_tokens_are_scoped_per_domain(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"# comment\n{h.TOKEN} legal\n{h.TOKEN_ALL} *\n")
    tokens = load_tokens(tokens_file=path, tokens_env="T", environ={"T": f"{h.TOKEN_CS}=customer_service,medical"})
    assert len(tokens) == 3 and "tok-" not in repr(tokens)
    assert tokens.allows(h.TOKEN, "legal") is True
    assert tokens.allows(h.TOKEN, "medical") is False
    assert tokens.allows(h.TOKEN_ALL, "finance") is True
    assert tokens.allows(h.TOKEN_CS, "medical") is True
    assert tokens.allows("tok-legal-0123456789abcdeX", "legal") is None
    path.write_text(f"{h.TOKEN}\n")
    with pytest.raises(ConfigError, match=r"tokens.txt:1: expected '<token> <domain>"):
        load_tokens(tokens_file=path)
    with pytest.raises(ConfigError, match="shorter than 16"):
        TokenSet({"short": ("legal",)})


def test_batcher_dispatches_a_lone_request_at_once_and_batches_the_backlog():
    import threading

    sizes, seen = [], []
    started, release = threading.Event(), threading.Event()

    def run(items):
        seen.append(list(items))
        if len(seen) == 1:  # hold the first batch so that the others queue behind it
            started.set()
            release.wait(30)
        return [x * 10 for x in items]

    async def main():
        loop = asyncio.get_running_loop()
        # A lone request finds the worker idle: it runs at once, never waiting its 60 s max_wait.
        batcher = DynamicBatcher(run, max_batch_size=4, max_wait_ms=60_000, on_batch=lambda n, _s: sizes.append(n))
        first = asyncio.ensure_future(batcher.submit(0))
        await loop.run_in_executor(None, started.wait, 30)
        backlog = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *backlog[:8]), 30)
        # The ninth waits (up to 60 s) for company; closing the batcher fails it instead of running it.
        await batcher.aclose()
        with pytest.raises(BatcherClosed, match="shutting down"):
            await asyncio.wait_for(backlog[8], 30)
        return results

    results = asyncio.run(main())
    assert results == [i * 10 for i in range(9)]
    assert seen == [[0], [1, 2, 3, 4], [5, 6, 7, 8]] and sizes == [1, 4, 4]


def test_batcher_tops_up_a_batch_until_the_oldest_deadline():
    async def main():
        batcher = DynamicBatcher(lambda items: [len(items)] * len(items), max_batch_size=8, max_wait_ms=50)
        batcher._busy = True  # as if a batch were running: arrivals queue with a 50 ms deadline
        out = await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        await batcher.aclose()
        with pytest.raises(BatcherClosed):
            await batcher.submit(1)
        return out

    assert asyncio.run(main()) == [3, 3, 3]


def test_batcher_failure_reaches_every_request_of_the_batch():
    def run(items):
        raise RuntimeError("model broke")

    async def main():
        batcher = DynamicBatcher(run, max_batch_size=4, max_wait_ms=10)
        batcher._busy = True
        out = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        await batcher.aclose()
        return out

    assert [str(e) for e in asyncio.run(main())] == ["model broke"] * 3


def test_request_log_is_bounded_and_expires():
    now = [0.0]
    log = RequestLog(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    for i in range(3):
        log.remember(request_id=f"r{i}", domain="legal", model_version="1.0", question="q", answer="a")
    assert log.get("r0") is None and log.get("r1").request_id == "r1" and len(log) == 2
    now[0] = 10.5
    log.remember(request_id="r3", domain="legal", model_version="1.0", question="q", answer="a")
    assert log.get("r1") is None and log.get("r2") is None and log.get("r3") is not None
    assert "q" not in repr(log.get("r3")).replace("request_id", "")


def test_latency_monitor_fires_once_per_excursion():
    now = [0.0]
    monitor = LatencyMonitor(threshold_ms=500, window_seconds=60, min_requests=5, clock=lambda: now[0])
    for _ in range(4):
        monitor.observe(0.9)
    assert monitor.check() is None  # too few requests to call it a trend
    for _ in range(16):
        monitor.observe(0.1)
    monitor.observe(0.9)
    alarm = monitor.check()  # 5 of 21 slow: p95 is a slow one
    assert (alarm.p95_ms, alarm.requests, alarm.threshold_ms) == (900.0, 21, 500)
    assert monitor.check() is None  # still above: no repeat
    now[0] = 61.0
    for _ in range(20):
        monitor.observe(0.05)
    assert monitor.check() is None and monitor.p95_ms() == (50.0, 20)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10


def test_feedback_is_masked_valid_and_create_only(tmp_path):
    store = LocalObjectStore(tmp_path)
    at = dt.datetime(2026, 10, 20, 8, 30, tzinfo=dt.timezone.utc)
    key = write_feedback(store, request_id="abc123", domain="customer_service", model_version="1.3",
                         question="call me at 13812345678 or mail li@example.com", answer="we will call 13812345678",
                         rating=5, correction=None, created_at=at)
    assert key == "landing/feedback/2026-10-20/abc123.jsonl"
    record = json.loads(store.get(key))
    assert record == {"request_id": "abc123", "domain": "customer_service", "model_version": "1.3",
                      "question": "call me at [PHONE_1] or mail [EMAIL_1]", "answer": "we will call [PHONE_1]",
                      "rating": 5, "correction": None, "created_at": "2026-10-20T08:30:00Z"}
    with pytest.raises(FeedbackError, match="already has feedback") as info:
        write_feedback(store, request_id="abc123", domain="customer_service", model_version="1.3", question="q",
                       answer="a", rating=4, created_at=at)
    assert info.value.status == 409
    with pytest.raises(FeedbackError, match="rating"):
        feedback_record(request_id="x", domain="legal", model_version="1", question="q", answer="a", rating=6)


def test_artifact_fetch_verifies_every_file_and_the_id(tmp_path):
    from pipelines.artifacts import MANIFEST, artifact_id_of
    from pipelines.serialize import canonical_json

    store = LocalObjectStore(tmp_path / "store")
    assert production(store, "legal") is None
    one = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "m1", seed=1), version="1.0",
                 task="classification")
    two = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "m2", seed=2), version="1.1",
                 task="classification")
    assert (h.promote(store, one), h.promote(store, two), h.rollback(store, "legal", one.artifact_id)) == (1, 2, 3)
    pointer = production(store, "legal")
    assert (pointer.number, pointer.action, pointer.artifact_id, pointer.version) == (3, "rollback", one.artifact_id, "1.0")
    got = fetch_artifact(store, domain="legal", artifact_id=one.artifact_id, cache_dir=tmp_path / "cache")
    assert got == tmp_path / "cache" / "legal" / one.artifact_id
    assert sorted(p.name for p in got.iterdir()) == ["config.json", "manifest.json", "model.safetensors",
                                                     "pipeline_model.json", "tokenizer.json", "tokenizer_config.json"]
    servable = load_servable(got)
    assert (servable.task, servable.labels, servable.quantized) == ("classification", ("contract", "other", "tort"), False)
    assert servable.manifest["artifact_id"] == one.artifact_id == artifact_id_of(servable.manifest["files"])

    key = f"{one.root}/config.json"
    store.put(key, store.get(key).replace(b"}", b' , "x": 1}', 1))
    # The verified copy already downloaded still matches the manifest; a fresh download does not.
    assert fetch_artifact(store, domain="legal", artifact_id=one.artifact_id, cache_dir=tmp_path / "cache") == got
    with pytest.raises(ArtifactRefused, match="^config.json: .*config.json has .* bytes, manifest says"):
        fetch_artifact(store, domain="legal", artifact_id=one.artifact_id, cache_dir=tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "legal" / one.artifact_id).exists()
    with pytest.raises(ArtifactRefused, match="manifest.json does not exist"):
        fetch_artifact(store, domain="legal", artifact_id="0123456789abcdef", cache_dir=tmp_path / "cache")

    # A manifest copied under another id (claiming that id) is refused: the id is the files map's hash.
    manifest = json.loads(store.get(f"{two.root}/{MANIFEST}"))
    forged = "fedcba9876543210"
    for rel in manifest["files"]:
        store.put(f"models/legal/artifacts/{forged}/{rel}", store.get(f"{two.root}/{rel}"))
    store.put(f"models/legal/artifacts/{forged}/{MANIFEST}", canonical_json(dict(manifest, artifact_id=forged)))
    with pytest.raises(ArtifactRefused, match=f"manifest's artifact_id {forged} does not match its files map "
                                              f"\\({two.artifact_id}\\)"):
        fetch_artifact(store, domain="legal", artifact_id=forged, cache_dir=tmp_path / "cache")
    # A promotion record naming something that is not an artifact id is refused before any download.
    store.put("models/legal/promotions/00000004.json", json.dumps({"number": 4, "artifact_id": "../../etc"}).encode())
    with pytest.raises(ArtifactRefused, match="promotion 4 of legal: artifact id '../../etc' is not 16 lowercase hex"):
        production(store, "legal")


def test_int8_servable_classifies_like_fp32(tmp_path):
    from pipelines.serving.inference import classify

    folder = h.classifier_folder(tmp_path / "m", seed=4)
    h.push(LocalObjectStore(tmp_path / "store"), domain="legal", folder=folder, version="1.0", task="classification")
    fp32, int8 = load_servable(folder), load_servable(folder, quantize_int8=True)
    texts = h.TEXTS[:12]
    a, b = classify(fp32, texts), classify(int8, texts)
    assert int8.quantized and int8.bytes < fp32.bytes
    assert [p.label for p in a] == [p.label for p in b]
    assert max(abs(p.scores[k] - q.scores[k]) for p, q in zip(a, b) for k in p.scores) < 0.05
