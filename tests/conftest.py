"""Shared fixtures: a real SeaweedFS S3 server (started by the project's own script) and a throwaway
Airflow home with a migrated database for ``dag.test()``.

The environment for Airflow must be set before anything imports airflow, hence module level.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from _lanes import lanes_of  # tests/ is on sys.path: pytest inserts a rootdir conftest's folder

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PIPELINE_TEST_STATE_DIR") or tempfile.mkdtemp(prefix="mlops-tests-"))


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_base() -> int:
    """A base port whose SeaweedFS ports (and their +10000 gRPC twins) are all free."""
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000, 10)
        ports = [base, base + 1, base + 2, base + 3, base + 4]
        if all(_free(p) and _free(p + 10000) for p in ports):
            return base
    raise RuntimeError("no free port range found for the test SeaweedFS server")


S3_PORT = int(os.environ.get("PIPELINE_TEST_S3_PORT") or _pick_base())

os.environ.setdefault("AIRFLOW_HOME", str(STATE / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
for p in (str(ROOT), str(ROOT / "plugins")):
    if p not in sys.path:
        sys.path.insert(0, p)
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])


def pytest_collection_modifyitems(config, items):
    """Mark every test with its lane(s) (pytest.ini lists them); ``gpu`` tests skip without CUDA."""
    cuda = None
    for item in items:
        own = {mark.name for mark in item.iter_markers()}
        for lane in sorted(lanes_of(str(Path(item.fspath).relative_to(ROOT / "tests")), item.fixturenames, own) - own):
            item.add_marker(getattr(pytest.mark, lane))
        if "gpu" in own:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA (gpu lane)"))


def _service_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PIPELINE_STATE_DIR": str(STATE / "services"),
        "PIPELINE_S3_PORT": str(S3_PORT),
        "PIPELINE_WEED_MASTER_PORT": str(S3_PORT + 1),
        "PIPELINE_WEED_VOLUME_PORT": str(S3_PORT + 2),
        "PIPELINE_WEED_FILER_PORT": str(S3_PORT + 3),
        "PIPELINE_WEED_ADMIN_PORT": str(S3_PORT + 4),
        "PIPELINE_BUCKET": "mlops-test",
    })
    return env


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="session")
def s3_server():
    """A SeaweedFS S3 server on loopback, started and stopped with scripts/services.sh."""
    env = _service_env()
    start = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "start", "seaweedfs"], env=env,
                           capture_output=True, text=True, timeout=180)
    if start.returncode != 0:
        pytest.fail(f"could not start SeaweedFS:\n{start.stdout}\n{start.stderr}")
    creds = _read_env_file(Path(env["PIPELINE_STATE_DIR"]) / "credentials.env")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[key] = creds[key]
    os.environ["PIPELINE_S3_ENDPOINT_URL"] = creds["PIPELINE_S3_ENDPOINT_URL"]
    yield creds
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "stop", "seaweedfs"], env=env,
                   capture_output=True, text=True, timeout=120)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket per test; PIPELINE_BUCKET points at it."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:20]}"
    client = boto3.client("s3", endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=name)
    monkeypatch.setenv("PIPELINE_BUCKET", name)
    return name


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB in a temporary AIRFLOW_HOME."""
    from airflow.utils import db

    from airflow.models.pool import Pool

    db.resetdb()
    # The training DAGs' GPU tasks run in this pool (scripts/services.sh creates it for real runs).
    Pool.create_or_update_pool("gpu", 1, "GPU training slots", False)
    return os.environ["AIRFLOW_HOME"]


def tiny_training_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment overrides that make training runs tiny, seeded and CPU-only (checkpoints and cache in tmp_path).

    Keyword arguments are further ``PIPELINE__TRAINING__<KEY>`` values (``batch_size="4"``).
    """
    values = {"epochs": "1", "monthly_epochs": "1", "batch_size": "16", "size": "tiny", "max_length": "48",
              "eval_percent": "25", "seed": "7", "device": "cpu", "num_threads": "1",
              # The mechanics tests train tiny random-init models (not the section's MiniLM recipe).
              "base": "scratch", "method": "full", "learning_rate": "5e-4", "monthly_learning_rate": "1e-3",
              "warmup_fraction": "0", "min_n_epsilon": "0",
              "checkpoint_root": str(tmp_path / "checkpoints"), **overrides}
    env = {f"PIPELINE__TRAINING__{key.upper()}": value for key, value in values.items()}
    env["PIPELINE__ARTIFACTS__CACHE_DIR"] = str(tmp_path / "cache")
    # Seconds-long tiny runs learn too little to beat the trivial baseline; tests of that gate turn it back on.
    env["PIPELINE__ARTIFACTS__TRIVIAL_GATE"] = "false"
    return env


@pytest.fixture
def tiny_training(tmp_path, monkeypatch):
    """Tiny, seeded, single-threaded training for this test (see ``tiny_training_env``)."""
    import torch

    torch.set_num_threads(1)
    for key, value in tiny_training_env(tmp_path).items():
        monkeypatch.setenv(key, value)
