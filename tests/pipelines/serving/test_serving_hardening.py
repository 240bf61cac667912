"""Bad bodies, a failing store, early disconnects and client-visible latency, on a real server over loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import serving_helpers as h

from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.screening import InputFilter
from pipelines.serving.service import ModelService
from pipelines.serving.store import open_serving_store
from pipelines.storage import LocalObjectStore

AUTH = {"Authorization": f"Bearer {h.TOKEN}"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return h.classifier_folder(tmp_path_factory.mktemp("model"), seed=1)


def _service(tmp_path, model_folder, **overrides) -> ModelService:
    """A service over a local store with one promoted tiny classifier for ``legal``, started."""
    import shutil

    from pipelines.sensitive import default_lexicon

    store = LocalObjectStore(tmp_path / "store")
    folder = shutil.copytree(model_folder, tmp_path / "m")
    h.promote(store, h.push(store, domain="legal", folder=folder, version="1.0", task="classification"))
    config = ServingConfig(poll_seconds=3600, cache_dir=str(tmp_path / "cache"), max_wait_ms=1.0, **overrides)
    service = ModelService(config=config, store=store, domains={"legal": "classification"},
                           tokens=TokenSet({h.TOKEN: ("legal",)}),
                           input_filter=InputFilter(default_lexicon(), policy="reject"),
                           alert=lambda _cfg, **kw: None)
    service.start()
    return service


def _address(url: str) -> tuple[str, int]:
    host, port = url.rsplit("//", 1)[1].split(":")
    return host, int(port)


def test_bad_bodies_get_4xx_not_500(tmp_path, model_folder):
    deep = '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"  # 200 kB: under max_body_bytes
    utf16 = json.dumps({"text": "the contract was signed"}).encode("utf-16")
    with h.running(_service(tmp_path, model_folder)) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        nested = c.post("/v1/legal/predict", content=deep, headers={"Content-Type": "application/json"})
        as_utf16 = c.post("/v1/legal/predict", content=utf16, headers={"Content-Type": "application/json"})
        declared = c.post("/v1/legal/predict", content=utf16,
                          headers={"Content-Type": "application/json; charset=utf-16"})
        blank = c.post("/v1/legal/predict", json={"text": " \u0000\u200b\u200d\ufeff\n\t "})
        hidden = c.post("/v1/legal/predict", json={"text": "join our pon\u200bzi sch\u200beme today"})
        fine = c.post("/v1/legal/predict", json={"text": "the contract was\u200b signed"})
    assert (nested.status_code, nested.json()) == (400, {"error": "malformed_json",
                                                         "detail": "the body nests too deeply"})
    assert (as_utf16.status_code, as_utf16.json()["error"]) == (400, "malformed_json")
    assert (declared.status_code, declared.json()["error"]) == (415, "unsupported_charset")
    assert (blank.status_code, blank.json()["error"]) == (400, "empty_input")
    assert (hidden.status_code, hidden.json()["error"]) == (400, "sensitive_input")
    assert "fraud" in hidden.json()["detail"]
    assert fine.status_code == 200


def _request_id(url: str) -> str:
    r = httpx.post(f"{url}/v1/legal/predict", json={"text": "the loan rate is fixed"}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["request_id"]


def _s3_config(port: int) -> SimpleNamespace:
    """The two parts of a ``PipelineConfig`` that ``open_store`` reads, pointing at a loopback port."""
    return SimpleNamespace(storage=SimpleNamespace(endpoint_url=f"http://127.0.0.1:{port}", bucket="mlops-data",
                                                   region="us-east-1"),
                           security=SimpleNamespace(enabled=False))


@pytest.fixture
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_feedback_with_a_stopped_store_is_a_json_503(tmp_path, model_folder, fake_credentials):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: connections are refused
    service = _service(tmp_path, model_folder, store_timeout_seconds=1.0)
    with h.running(service) as url:
        request_id = _request_id(url)
        service.store = open_serving_store(_s3_config(port), service.config)
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/legal/feedback", json={"request_id": request_id, "rating": 4}, headers=AUTH,
                       timeout=30)
        seconds = time.monotonic() - started
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "store_unavailable" and "Traceback" not in r.text
    assert seconds < 10


def test_feedback_with_a_frozen_store_answers_503_soon_and_writes_nothing_after(tmp_path, model_folder,
                                                                                fake_credentials):
    """A store that accepts connections and never answers: 503 within the bounded attempts, and no attempt
    (so no write) is still under way once the client has its answer."""
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)
    frozen.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = frozen.accept()
            except TimeoutError:
                continue
            held.append(conn)  # never read from, never answered

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    service = _service(tmp_path, model_folder, store_timeout_seconds=1.0, store_max_attempts=2)
    try:
        with h.running(service) as url:
            request_id = _request_id(url)
            service.store = open_serving_store(_s3_config(frozen.getsockname()[1]), service.config)
            started = time.monotonic()
            r = httpx.post(f"{url}/v1/legal/feedback", json={"request_id": request_id, "rating": 2}, headers=AUTH,
                           timeout=30)
            seconds = time.monotonic() - started
            attempts = len(held)
            time.sleep(2.5)  # longer than one more attempt would take
            attempts_later = len(held)
    finally:
        stop.set()
        acceptor.join(timeout=5)
        for conn in held:
            conn.close()
        frozen.close()
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
    assert r.headers["retry-after"] == "5"
    assert seconds < 8
    assert attempts == attempts_later == 2


def test_client_that_disconnects_early_logs_no_error(tmp_path, model_folder, caplog):
    caplog.set_level(logging.INFO)
    with h.running(_service(tmp_path, model_folder)) as url:
        sock = socket.create_connection(_address(url))
        sock.sendall(b"POST /v1/legal/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + h.TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"text\": ")
        time.sleep(0.3)
        sock.close()
        time.sleep(0.5)
        after = httpx.get(f"{url}/healthz")
    assert after.status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert any("client went away" in r.getMessage() for r in caplog.records)


def test_latency_counts_from_the_first_byte_of_the_request(tmp_path, model_folder):
    """A request whose head takes 0.6 s to arrive is 0.6 s+ of latency to its client: the alarm sees that too."""
    service = _service(tmp_path, model_folder)
    with h.running(service) as url:
        body = json.dumps({"text": "the loan rate is fixed"}).encode()
        sock = socket.create_connection(_address(url))
        sock.sendall(b"POST /v1/legal/predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.6)
        sock.sendall(b"Authorization: Bearer " + h.TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        sock.settimeout(10)
        answer = sock.recv(65536)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    p95_ms, n = service.latency.p95_ms()
    assert n == 1 and p95_ms >= 600
