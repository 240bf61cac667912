"""A real Airflow api-server for the console's e2e tests, sharing the tests' metadata DB (``airflow_db``).

``dag.test()`` in the test process and this api-server (a subprocess) use the same SQLite DB in the tests'
AIRFLOW_HOME: a response given through the api-server's HITL REST API or its "Required actions" page resumes a
task that ``dag.test()`` keeps parked in ``awaiting_input``. SimpleAuthManager users ``admin`` (role admin),
``viewer`` (viewer) and ``op`` (op), with the passwords of :data:`PASSWORDS`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERS = {"admin": "admin", "viewer": "viewer", "op": "op"}  # user -> role
PASSWORDS = {name: f"{name}-pw" for name in USERS}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ApiServer:
    url: str
    log: Path

    def token(self, user: str) -> str:
        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def call(self, method: str, path: str, *, user: str = "admin", body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token(user)}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def start_api_server(home: str, *, env_overrides: dict[str, str | None] | None = None,
                     ) -> tuple[subprocess.Popen, ApiServer]:
    """Start ``airflow api-server`` on a free loopback port for the DB in ``home``; wait until it answers.

    ``env_overrides``: environment values for the server (None removes one), e.g. the console's store.
    """
    passwords = Path(home) / "console_test_passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "console-e2e-secret",
    })
    for key, value in (env_overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    log = Path(home) / f"api-server-{port}.log"
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "airflow"), "api-server", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    server = ApiServer(url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api-server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/v2/monitor/health", timeout=5):
                return proc, server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    stop_api_server(proc)
    raise RuntimeError(f"api-server did not answer in 180 s:\n{log.read_text()[-3000:]}")


def stop_api_server(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
