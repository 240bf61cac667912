"""Limits that hold before authentication, on a real server over loopback sockets (bounded loops only)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import serving_helpers as h

from pipelines.config import ConfigError
from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.service import ModelService
from pipelines.storage import LocalObjectStore


def _service(tmp_path, **overrides) -> ModelService:
    config = ServingConfig(poll_seconds=5.0, cache_dir=str(tmp_path / "cache"), **overrides)
    service = ModelService(config=config, store=LocalObjectStore(tmp_path / "store"),
                           domains={"legal": "classification"}, tokens=TokenSet({h.TOKEN: ("legal",)}),
                           alert=lambda _cfg, **kw: None)
    service.start()
    return service


def _address(url: str) -> tuple[str, int]:
    host, port = url.rsplit("//", 1)[1].split(":")
    return host, int(port)


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_limits_config_defaults_and_validation():
    config = ServingConfig()
    assert (config.max_header_bytes, config.header_timeout_seconds, config.body_timeout_seconds,
            config.keepalive_seconds, config.max_connections) == (16384, 5.0, 10.0, 5.0, 512)
    assert (config.store_timeout_seconds, config.store_max_attempts, config.retry_after_seconds) == (2.0, 2, 5)
    with pytest.raises(ConfigError, match="serving.max_header_bytes=100: use at least 1024"):
        ServingConfig(max_header_bytes=100)
    with pytest.raises(ConfigError, match="serving.header_timeout_seconds=0 must be > 0"):
        ServingConfig(header_timeout_seconds=0)
    with pytest.raises(ConfigError, match="serving.store_max_attempts=9: use 1..5"):
        ServingConfig(store_max_attempts=9)


def test_huge_header_gets_431_and_the_connection_closes(tmp_path):
    with h.running(_service(tmp_path, max_header_bytes=8192)) as url:
        sock = socket.create_connection(_address(url))
        started = time.monotonic()
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(64):  # up to 4 MB, 64 KiB at a time; the server hangs up long before
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock, timeout=10)
        sock.close()
        ok = httpx.get(f"{url}/healthz", headers={"X-Fine": "b" * 4000})
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert b'"error": "header_too_large"' in answer
    assert time.monotonic() - started < 10
    assert ok.status_code == 200  # a head under the limit passes


def test_slow_heads_are_closed_and_others_keep_being_answered(tmp_path):
    """50 slowloris connections send a byte every 0.1 s; each is closed 1 s (the limit) after its first byte,
    and a normal client gets 200 meanwhile, within 2 s."""
    with h.running(_service(tmp_path, header_timeout_seconds=1.0)) as url:
        address = _address(url)
        socks = [socket.create_connection(address) for _ in range(50)]
        closed_after: list[float] = []
        lock = threading.Lock()

        def drip(sock: socket.socket) -> None:
            started = time.monotonic()
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200
            answer = b""
            sock.settimeout(0.1)
            for byte in head[:60]:  # at most 6 s of dripping
                try:
                    sock.sendall(bytes([byte]))
                    answer = sock.recv(4096)  # an answer (408) or b"" (EOF): the server gave up on us
                    break
                except TimeoutError:
                    continue
                except OSError:
                    break
            answer += _read_all(sock, timeout=3)
            with lock:
                closed_after.append((time.monotonic() - started, answer[:12]))

        threads = [threading.Thread(target=drip, args=(s,)) for s in socks]
        for t in threads:
            t.start()
        time.sleep(0.3)
        asked = time.monotonic()
        normal = httpx.get(f"{url}/healthz", timeout=2)
        answered = time.monotonic() - asked
        for t in threads:
            t.join(timeout=15)
        for s in socks:
            s.close()
    assert normal.status_code == 200 and answered < 2
    assert len(closed_after) == 50
    assert max(seconds for seconds, _ in closed_after) < 4, sorted(closed_after)[-3:]
    assert {answer for _, answer in closed_after} == {b"HTTP/1.1 408"}


def test_idle_connection_and_slow_body_get_408(tmp_path):
    with h.running(_service(tmp_path, header_timeout_seconds=1.0, body_timeout_seconds=1.0)) as url:
        idle = socket.create_connection(_address(url))
        started = time.monotonic()
        idle_answer = _read_all(idle, timeout=5)
        idle_seconds = time.monotonic() - started
        idle.close()

        slow = socket.create_connection(_address(url))
        slow.sendall(b"POST /v1/legal/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + h.TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"text\": ")
        started = time.monotonic()
        slow_answer = _read_all(slow, timeout=5)
        slow_seconds = time.monotonic() - started
        slow.close()
    assert idle_answer.startswith(b"HTTP/1.1 408 ") and 0.8 < idle_seconds < 3
    assert slow_answer.startswith(b"HTTP/1.1 408 ") and b"request body did not arrive" in slow_answer
    assert 0.8 < slow_seconds < 3


def test_keep_alive_is_bounded_and_connections_are_capped(tmp_path):
    with h.running(_service(tmp_path, keepalive_seconds=1.0, max_connections=4)) as url:
        kept = socket.create_connection(_address(url))
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = _read_all(kept, timeout=5)  # the answer, then EOF when the idle keep-alive ends
        kept_seconds = time.monotonic() - started
        kept.close()
        held = [socket.create_connection(_address(url)) for _ in range(4)]
        time.sleep(0.2)
        try:
            over = httpx.get(f"{url}/healthz", timeout=5)
        finally:
            for s in held:
                s.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and 0.8 < kept_seconds < 3
    assert over.status_code == 503
