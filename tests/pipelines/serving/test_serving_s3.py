"""The service against a real S3 server (SeaweedFS): hot reload under load, refusal, auth, bad input, feedback."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import serving_helpers as h

from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.screening import InputFilter, OutputScreen, train_output_screen
from pipelines.serving.service import ModelService
from pipelines.storage import S3ObjectStore


@pytest.fixture
def store(s3_bucket, s3_server):
    return S3ObjectStore(bucket=s3_bucket, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"])


def _service(store, tmp_path, domains, *, alerts, screen=None, **overrides):
    from pipelines.sensitive import default_lexicon

    config = ServingConfig(poll_seconds=0.2, cache_dir=str(tmp_path / "cache"), max_wait_ms=2.0, **overrides)
    tokens = TokenSet({h.TOKEN: ("legal",), h.TOKEN_ALL: ("*",), h.TOKEN_CS: ("customer_service",)})
    service = ModelService(config=config, store=store, domains=domains, tokens=tokens,
                           input_filter=InputFilter(default_lexicon(), policy="reject"), output_screen=screen,
                           alert=lambda _cfg, **kw: alerts.append(kw))
    service.start()
    return service


def test_hot_reload_promotion_rollback_and_tampered_artifact_under_load(store, tmp_path):
    v1 = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "v1", seed=1),
                version="1.0", task="classification")
    v2 = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "v2", seed=2),
                version="1.1", task="classification")
    bad = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "v3", seed=3),
                 version="1.2", task="classification")
    assert h.promote(store, v1) == 1
    alerts: list[dict] = []
    # The service reads through a faulty path: the promotion verifies the stored artifact, the service
    # then downloads altered bytes (same size) of one file and must refuse them.
    seen_by_service = h.CorruptingStore(store)
    service = _service(seen_by_service, tmp_path, {"legal": "classification"}, alerts=alerts)
    seen: list[tuple[int, str, int]] = []
    stop = threading.Event()

    def client(url):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {h.TOKEN}"}, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/legal/predict", json={"text": "the contract was signed by both parties"})
                body = r.json()
                seen.append((r.status_code, body.get("model_version"), body.get("promotion")))

    with h.running(service) as url:
        thread = threading.Thread(target=client, args=(url,))
        thread.start()
        try:
            h.wait_for(lambda: len(seen) >= 5)
            assert h.promote(store, v2) == 2
            h.wait_for(lambda: seen[-1][1] == "1.1")
            n = len(seen)
            h.wait_for(lambda: len(seen) >= n + 5)
            assert h.rollback(store, "legal", v1.artifact_id) == 3
            h.wait_for(lambda: seen[-1][2] == 3)
            seen_by_service.corrupt.add(f"{bad.root}/model.safetensors")
            assert h.promote(store, bad) == 4
            h.wait_for(lambda: service.metrics.reloads.labels("legal", "refused")._value.get() == 1)
            n = len(seen)
            h.wait_for(lambda: len(seen) >= n + 5)
        finally:
            stop.set()
            thread.join()
        anonymous_ready = httpx.get(f"{url}/readyz").json()
        anonymous_metrics = httpx.get(f"{url}/metrics")
        auth = {"Authorization": f"Bearer {h.TOKEN}"}
        ready = httpx.get(f"{url}/readyz", headers=auth).json()
        metrics = httpx.get(f"{url}/metrics", headers=auth).text

    assert {code for code, _, _ in seen} == {200}
    # The served version follows the pointer's records in order: 1.0 (1), 1.1 (2), 1.0 again (3, rollback).
    runs = [seen[0][1:]]
    for _, version, promotion in seen[1:]:
        if (version, promotion) != runs[-1]:
            runs.append((version, promotion))
    assert runs == [("1.0", 1), ("1.1", 2), ("1.0", 3)]
    assert seen[-1][1:] == ("1.0", 3)  # the tampered promotion 4 was refused: the rollback keeps serving
    # Without a token: ready or not, nothing about domains or artifacts. With one: what is served, which is not
    # what the production pointer names after the refused promotion 4.
    assert anonymous_ready == {"ready": True}
    assert anonymous_metrics.status_code == 401 and "legal" not in anonymous_metrics.text
    assert ready["ready"] is True and ready["models"] == {"legal": "1.0"}
    assert ready["served"] == {"legal": {"version": "1.0", "artifact_id": v1.artifact_id, "promotion": 3}}
    assert ready["refused"]["legal"]["promotion"] == 4
    assert ready["refused"]["legal"]["artifact_id"] == bad.artifact_id
    assert "model.safetensors does not match its sha256" in ready["refused"]["legal"]["reason"]
    assert [a["title"] for a in alerts] == ["serving: refused model for legal"]
    assert f"promotion 4 (artifact {bad.artifact_id}) was refused: model.safetensors: " in alerts[0]["text"]
    assert "model.safetensors does not match its sha256 in the manifest (altered)" in alerts[0]["text"]
    assert f"1.0 (artifact {v1.artifact_id}) keeps serving" in alerts[0]["text"]
    assert not (tmp_path / "cache" / "legal" / bad.artifact_id).exists()
    assert 'serving_model_reloads_total{domain="legal",outcome="loaded"} 3.0' in metrics
    assert f'serving_model_info{{artifact_id="{v1.artifact_id}",domain="legal",promotion="3",version="1.0"}} 1.0' in metrics
    assert "serving_batch_size_bucket" in metrics and "serving_request_latency_seconds_bucket" in metrics


@pytest.fixture(scope="module")
def screen():
    # Small and quick: this file checks the wiring; test_serving_screen.py checks what the screen catches.
    labeller, _metrics = train_output_screen(n=300, seed=3)
    return labeller


def test_auth_bad_input_generate_and_feedback_on_s3(store, tmp_path, screen):
    from pipelines.sensitive import default_lexicon

    legal = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "c", seed=1),
                   version="2.0", task="classification")
    lm = h.push(store, domain="customer_service", folder=h.causal_folder(tmp_path / "lm", seed=1),
                version="1.4", task="causal_lm")
    h.promote(store, legal)
    h.promote(store, lm)
    alerts: list[dict] = []
    output_screen = OutputScreen(screen, block=("unsafe",), threshold=0.5, name="output_screen",
                                 lexicon_filter=InputFilter(default_lexicon(), policy="mask"))
    service = _service(store, tmp_path, {"legal": "classification", "customer_service": "causal_lm"},
                       alerts=alerts, screen=output_screen, max_input_chars=200, max_body_bytes=1000)
    legal_auth = {"Authorization": f"Bearer {h.TOKEN}"}
    with h.running(service) as url, httpx.Client(base_url=url, timeout=30) as c:
        def code(path, body=None, headers=legal_auth, content=None):
            kwargs = {"content": content} if content is not None else {"json": body}
            r = c.post(path, headers={**headers, "Content-Type": "application/json"}, **kwargs)
            return r.status_code, r.json().get("error")

        ok = {"text": "the contract was signed"}
        assert code("/v1/legal/predict", ok, headers={}) == (401, "unauthorized")
        assert code("/v1/legal/predict", ok, headers={"Authorization": "Bearer not-a-known-token-at-all"}) == (401, "unauthorized")
        assert code("/v1/legal/predict", ok, headers={"Authorization": f"Basic {h.TOKEN}"}) == (401, "unauthorized")
        assert code("/v1/customer_service/generate", {"prompt": "hello"}) == (403, "forbidden")
        assert code("/v1/nowhere/predict", ok, headers={"Authorization": f"Bearer {h.TOKEN_ALL}"}) == (404, "unknown_domain")
        assert code("/v1/legal/predict", content=b"{not json") == (400, "malformed_json")
        assert code("/v1/legal/predict", content=b"[1, 2]") == (400, "malformed_json")
        assert code("/v1/legal/predict", {"text": "网络赌博 contract"}) == (400, "sensitive_input")
        assert code("/v1/legal/predict", {"text": "x" * 201}) == (413, "too_large")
        assert code("/v1/legal/predict", content=b'{"text": "' + b"y" * 1200 + b'"}') == (413, "too_large")
        assert code("/v1/legal/predict", {"text": 5}) == (422, "invalid_input")
        assert code("/v1/legal/predict", {"text": "a", "extra": 1}) == (422, "invalid_input")
        assert code("/v1/legal/predict", {}) == (422, "invalid_input")
        assert code("/v1/legal/generate", {"prompt": "hi"}) == (404, "wrong_endpoint")
        r = c.post("/v1/legal/predict", json={"text": "sensitive words: 网络赌博"}, headers=legal_auth)
        assert "网络赌博" not in r.text and "gambling" in r.text

        cs = {"Authorization": f"Bearer {h.TOKEN_CS}"}
        r = c.post("/v1/customer_service/generate", json={"prompt": "my phone is 13812345678 refund my order",
                                                          "max_new_tokens": 4}, headers=cs)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["model_version"], answer["artifact_id"], answer["promotion"]) == ("1.4", lm.artifact_id, 1)
        assert answer["tokens"] <= 4 and isinstance(answer["withheld"], bool)
        assert code("/v1/customer_service/generate", {"prompt": "hi", "max_new_tokens": 999}, headers=cs) == (422, "invalid_input")
        fb = c.post("/v1/customer_service/feedback", json={"request_id": answer["request_id"], "rating": 5,
                                                           "correction": "call 13812345678 back"}, headers=cs)
        assert fb.status_code == 201, fb.text
        again = c.post("/v1/customer_service/feedback", json={"request_id": answer["request_id"], "rating": 4},
                       headers=cs)
        assert again.status_code == 409
        assert code("/v1/customer_service/feedback", {"request_id": "unknown", "rating": 3}, headers=cs) == (404, "unknown_request")
        assert code("/v1/customer_service/feedback", {"request_id": answer["request_id"], "rating": 0}, headers=cs) == (422, "invalid_input")

    keys = [o.key for o in store.list("landing/feedback/")]
    assert keys == [fb.json()["stored"]] and keys[0].endswith(f"/{answer['request_id']}.jsonl")
    record = json.loads(store.get(keys[0]))
    import fastjsonschema

    from pipelines.serving.feedback import SCHEMA_PATH

    fastjsonschema.compile(json.loads(SCHEMA_PATH.read_text()))(record)
    assert record["question"] == "my phone is [PHONE_1] refund my order"
    assert record["correction"] == "call [PHONE_1] back"
    assert (record["model_version"], record["rating"], record["domain"]) == ("1.4", 5, "customer_service")
    assert record["answer"] == answer["text"]

