"""SIGKILL the training CLI mid-run and run it again: same weights and ledger steps as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from pipelines.artifacts import current_production, load_ref, read_artifact_manifest
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import build_domain_base
from pipelines.partition import Interval
from pipelines.privacy import read_ledger
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import upload_evaluation_sets

WEEK = Interval.parse("2026-10-04_2026-10-11")
RUN_ID = "weekly-legal-resume"
KILL_AT_STEP = 8  # epoch 2 of 2 (6 steps an epoch): the epoch-1 checkpoint exists, epoch 2 is lost


def cli_env(tmp_path, store_root, checkpoints) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1",
            "PIPELINE_S3_ENDPOINT_URL": f"file://{store_root}",
            "PIPELINE__TRAINING__EPOCHS": "2", "PIPELINE__TRAINING__BATCH_SIZE": "16",
            "PIPELINE__TRAINING__SIZE": "tiny", "PIPELINE__TRAINING__MAX_LENGTH": "48",
            "PIPELINE__TRAINING__EVAL_PERCENT": "25", "PIPELINE__TRAINING__SEED": "7",
            "PIPELINE__TRAINING__DEVICE": "cpu", "PIPELINE__TRAINING__NUM_THREADS": "1",
            "PIPELINE__TRAINING__CHECKPOINT_ROOT": str(checkpoints),
            "PIPELINE__ARTIFACTS__CACHE_DIR": str(tmp_path / "cache"), "PIPELINE__ARTIFACTS__TRIVIAL_GATE": "false"}


def train_command() -> list[str]:
    return [sys.executable, "-m", "pipelines", "train", "domain", "--domain", "legal", "--kind", "weekly",
            "--run-id", RUN_ID, "--who", "test", "--log-every", "1"]


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Two identical stores with one curated legal week and a base model."""
    root = tmp_path / "a"
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{root}")
    config = load_config()
    store = LocalObjectStore(root / config.storage.bucket)
    for path in sorted((PROJECT_ROOT / "data/sample/landing/legal").rglob("*")):
        if path.is_file() and WEEK.start.isoformat() <= path.parent.name < WEEK.end.isoformat():
            store.put(f"landing/legal/{path.parent.name}/{path.name}", path.read_bytes())
    assert process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))["published"]
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    upload_evaluation_sets(config, store, only=("legal",))
    shutil.copytree(root, tmp_path / "b")
    return config, tmp_path / "a", tmp_path / "b"


def model_digest_and_steps(config, root):
    store = LocalObjectStore(root / config.storage.bucket)
    record = current_production(store, "legal")
    manifest = read_artifact_manifest(store, load_ref(store, "legal", record.artifact_id))
    ledger = read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal")
    assert [r.entry.run_id for r in ledger] == [RUN_ID]
    return manifest["files"]["model.safetensors"]["sha256"], ledger[0].done["steps"], ledger[0].entry.steps


def test_killed_run_resumes_to_the_same_weights_and_ledger_steps(tmp_path, stores):
    config, killed_root, clean_root = stores
    env = cli_env(tmp_path, killed_root, tmp_path / "ckpt-a")
    process = subprocess.Popen(train_command(), env=env, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if f"step={KILL_AT_STEP} " in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL, "".join(seen[-20:])
    store = LocalObjectStore(killed_root / config.storage.bucket)
    assert current_production(store, "legal") is None  # nothing released by the killed attempt

    resumed = subprocess.run(train_command(), env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resum" in resumed.stderr.lower()
    clean = subprocess.run(train_command(), env=cli_env(tmp_path, clean_root, tmp_path / "ckpt-b"), cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert json.loads(resumed.stdout)["promoted"] is True

    digest, done_steps, planned_steps = model_digest_and_steps(config, killed_root)
    assert (digest, done_steps, planned_steps) == model_digest_and_steps(config, clean_root)
    assert done_steps == planned_steps == 12
