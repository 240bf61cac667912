"""Opt-in security of scripts/services.sh: HTTPS (TLS 1.3 only) and FAB roles on the Airflow api-server.

One real Airflow (api-server, scheduler, dag-processor, triggerer) is started for the module with a
self-signed certificate made here by ``cryptography``, PIPELINE_AIRFLOW_AUTH=fab and the roles of
deploy/airflow-roles.json, in a temporary state dir on free ports (~40-70 s with the user creation).
The checks that need no server (bad knobs) run before it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "services.sh"
VENV_BIN = ROOT / ".venv" / "bin"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def _fab_installed() -> bool:
    try:
        import airflow.providers.fab  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not (VENV_BIN / "airflow").exists() or not _fab_installed(),
    reason="needs the project venv with airflow and apache-airflow-providers-fab",
)


# ---------------------------------------------------------------------------- helpers
def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _pick_ports(start: int) -> list[int]:
    for base in range(start, start + 4000, 10):
        ports = [base, base + 1, base + 2]
        if all(_port_free(p) for p in ports):
            return ports
    raise RuntimeError("no free ports found")


def _clean_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_", "AIRFLOW", "OPENSSL_"))}
    env["PIPELINE_STATE_DIR"] = str(state)
    env.update(extra)
    return env


def _services(env: dict[str, str], *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=timeout)


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1/localhost, valid for a day, that is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "airflow.crt", folder / "airflow.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


# ---------------------------------------------------------------------------- bad knobs (no server)
@pytest.mark.parametrize(
    "extra, message",
    [
        ({"PIPELINE_AIRFLOW_SSL_CERT": "/nonexistent.crt"}, "go together: set both"),
        ({"PIPELINE_AIRFLOW_SSL_CERT": "/nonexistent.crt", "PIPELINE_AIRFLOW_SSL_KEY": "/nonexistent.key"},
         "PIPELINE_AIRFLOW_SSL_CERT=/nonexistent.crt: no such readable file"),
        ({"PIPELINE_AIRFLOW_AUTH": "ldap"}, "PIPELINE_AIRFLOW_AUTH=ldap: use 'simple'"),
        ({"PIPELINE_AIRFLOW_TLS_MIN_VERSION": "1.1"}, "PIPELINE_AIRFLOW_TLS_MIN_VERSION=1.1: use 1.3"),
    ],
)
def test_bad_security_knobs_are_clear_errors(tmp_path, extra, message):
    res = _services(_clean_env(tmp_path, **extra), "start", "airflow", timeout=30)
    assert res.returncode == 1
    assert message in res.stderr
    assert "unexpected failure" not in res.stderr
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_airflow_env_with_tls_and_fab(tmp_path):
    cert, key = make_self_signed(tmp_path)
    env = _clean_env(tmp_path / "s", AIRFLOW_API_PORT="18443", PIPELINE_AIRFLOW_SSL_CERT=str(cert),
                     PIPELINE_AIRFLOW_SSL_KEY=str(key), PIPELINE_AIRFLOW_AUTH="fab")
    script = 'set -eu; source "$1"; airflow_env; env | grep -E "^AIRFLOW__(API|CORE)__" | sort'
    res = subprocess.run(["bash", "-c", script, "_", str(ROOT / "scripts" / "lib.sh")],
                         env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    got = dict(line.split("=", 1) for line in res.stdout.splitlines())
    assert got["AIRFLOW__API__SSL_CERT"] == str(cert)
    assert got["AIRFLOW__API__SSL_KEY"] == str(key)
    assert got["AIRFLOW__API__BASE_URL"] == "https://127.0.0.1:18443"
    assert got["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "https://127.0.0.1:18443/execution/"
    assert got["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager")


def test_roles_file_shape():
    entries = json.loads((ROOT / "deploy" / "airflow-roles.json").read_text())
    perms: dict[str, set[tuple[str, str]]] = {}
    for e in entries:
        assert set(e) == {"name", "resource", "action"}
        perms.setdefault(e["name"], set()).update((a, e["resource"]) for a in e["action"].split(","))
    assert sorted(perms) == ["DataEngineer", "ModelApprover"]
    writes = {role: {p for p in ps if p[0] in ("can_create", "can_edit", "can_delete")} - {
        ("can_edit", "My Password"), ("can_edit", "My Profile")} for role, ps in perms.items()}
    assert writes["DataEngineer"] == {("can_edit", "DAGs"), ("can_create", "DAG Runs"), ("can_edit", "DAG Runs"),
                                      ("can_create", "Backfills"), ("can_edit", "Backfills"),
                                      ("can_edit", "Task Instances")}
    assert writes["ModelApprover"] == {("can_edit", "DAGs"), ("can_edit", "Task Instances"),
                                       ("can_edit", "HITL Detail")}


# ---------------------------------------------------------------------------- the real server
USERS = {"vera": ("Viewer", "vera-pw-1"), "dan": ("DataEngineer", "dan-pw-2"), "mona": ("ModelApprover", "mona-pw-3")}


@pytest.fixture(scope="module")
def secure_airflow(tmp_path_factory):
    """Airflow with HTTPS (self-signed) and the FAB auth manager; users vera, dan, mona created by the CLI."""
    folder = tmp_path_factory.mktemp("secure-airflow")
    cert, key = make_self_signed(folder)
    state = folder / "state"
    port, log_port, trigger_port = _pick_ports(35080)
    env = _clean_env(state, AIRFLOW_API_PORT=str(port), PIPELINE_AIRFLOW_WORKER_LOG_PORT=str(log_port),
                     PIPELINE_AIRFLOW_TRIGGER_LOG_PORT=str(trigger_port), PIPELINE_AIRFLOW_SSL_CERT=str(cert),
                     PIPELINE_AIRFLOW_SSL_KEY=str(key), PIPELINE_AIRFLOW_AUTH="fab")
    lib = str(ROOT / "scripts" / "lib.sh")
    users: list[subprocess.Popen] = []
    try:
        starter = subprocess.Popen([str(SERVICES), "start", "airflow"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        # The roles exist once the api-server is spawned: create the users while the services warm up.
        deadline = time.monotonic() + 200
        while not (state / "run" / "airflow-api-server.pid").exists() and starter.poll() is None:
            assert time.monotonic() < deadline, "services.sh start did not spawn the api-server"
            time.sleep(0.5)
        if starter.poll() is None:
            # `airflow users create`, as docs/SECURITY.md says, with lib.sh's environment
            users = [
                subprocess.Popen(
                    ["bash", "-c", 'set -eu; source "$1"; airflow_env; shift; exec airflow users create "$@"', "_",
                     lib, "--username", user, "--role", role, "--password", password, "--firstname", user,
                     "--lastname", "Test", "--email", f"{user}@example.com"],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for user, (role, password) in USERS.items()
            ]
        out, err = starter.communicate(timeout=300)
        start = subprocess.CompletedProcess(starter.args, starter.returncode, out, err)
        assert start.returncode == 0, start.stdout + start.stderr
        for proc in users:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
        yield {"state": state, "env": env, "port": port, "cert": cert, "start": start}
    finally:
        for proc in users:
            if proc.poll() is None:
                proc.kill()
        _services(env, "stop", "airflow", timeout=120)
        for name in COMPONENTS:  # never leak processes from a failed start
            f = state / "run" / f"airflow-{name}.pid"
            if f.exists():
                try:
                    os.killpg(int(f.read_text().strip()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass


def _context(cert: Path, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def _call(server, method: str, path: str, body=None, token: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"https://127.0.0.1:{server['port']}{path}", method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, context=_context(server["cert"]), timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def _token(server, user: str) -> str:
    status, body = _call(server, "POST", "/auth/token", {"username": user, "password": USERS[user][1]})
    assert status == 201, body
    return body["access_token"]


def test_health_over_https_with_the_certificate_as_ca(secure_airflow):
    assert "waiting for https://127.0.0.1:" in secure_airflow["start"].stdout
    status, health = _call(secure_airflow, "GET", "/api/v2/monitor/health")
    assert status == 200
    assert {c: health[c]["status"] for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy", "scheduler": "healthy", "triggerer": "healthy", "dag_processor": "healthy"}
    res = _services(secure_airflow["env"], "status", "airflow", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"healthy at https://127.0.0.1:{secure_airflow['port']}" in res.stdout


def test_status_without_the_env_adopts_the_running_tls_settings(secure_airflow):
    env = _clean_env(secure_airflow["state"])  # no port, certificate or auth variables
    res = _services(env, "status", "airflow", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"healthy at https://127.0.0.1:{secure_airflow['port']}" in res.stdout


def test_only_tls_1_3_is_accepted(secure_airflow):
    port = secure_airflow["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with _context(secure_airflow["cert"]).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            _context(secure_airflow["cert"], max_version=ssl.TLSVersion.TLSv1_2).wrap_socket(
                raw, server_hostname="127.0.0.1")
    # an unknown self-signed certificate is refused by a default client
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_plain_http_gets_no_api_answer(secure_airflow):
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{secure_airflow['port']}/api/v2/monitor/health", timeout=10)


def test_admin_password_file_is_private(secure_airflow):
    f = secure_airflow["state"] / "airflow" / "fab_admin_password.generated"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert f"password in {f}" in secure_airflow["start"].stdout
    status, body = _call(secure_airflow, "POST", "/auth/token",
                         {"username": "admin", "password": f.read_text().strip()})
    assert status == 201 and body["access_token"]


def test_wrong_password_gets_no_token(secure_airflow):
    status, _ = _call(secure_airflow, "POST", "/auth/token", {"username": "vera", "password": "nope"})
    assert status == 401


def _wait_for_dag(server, token: str, dag_id: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _call(server, "GET", f"/api/v2/dags/{dag_id}", token=token)
        if status == 200:
            return
        assert time.monotonic() < deadline, f"{dag_id} not parsed: {status} {body}"
        time.sleep(1)


def test_roles_on_triggering_weekly_ingest(secure_airflow):
    tokens = {user: _token(secure_airflow, user) for user in USERS}
    _wait_for_dag(secure_airflow, tokens["vera"], "weekly_ingest")  # viewers read
    path = "/api/v2/dags/weekly_ingest/dagRuns"
    status, body = _call(secure_airflow, "POST", path, {"logical_date": None}, token=tokens["vera"])
    assert (status, body) == (403, '{"detail":"Forbidden"}')
    status, body = _call(secure_airflow, "POST", path, {"logical_date": None}, token=tokens["mona"])
    assert status == 403  # approvers do not start pipelines
    status, body = _call(secure_airflow, "POST", path, {"logical_date": None}, token=tokens["dan"])
    assert status in (200, 409), body
    assert body["triggering_user_name"] == "dan" and body["run_type"] == "manual"
    # no one reads without a token
    status, _ = _call(secure_airflow, "GET", "/api/v2/dags/weekly_ingest")
    assert status == 401


def test_roles_on_backfills(secure_airflow):
    body = {"dag_id": "weekly_ingest", "from_date": "2026-01-04T00:00:00Z", "to_date": "2026-01-18T00:00:00Z"}
    status, _ = _call(secure_airflow, "POST", "/api/v2/backfills/dry_run", body, token=_token(secure_airflow, "vera"))
    assert status == 403
    status, _ = _call(secure_airflow, "POST", "/api/v2/backfills/dry_run", body, token=_token(secure_airflow, "mona"))
    assert status == 403
    status, answer = _call(secure_airflow, "POST", "/api/v2/backfills/dry_run", body,
                           token=_token(secure_airflow, "dan"))
    assert status == 200, answer
