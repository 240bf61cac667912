"""``training.devices: 2``: the CLI run launches a 2-process torchrun job (gloo on CPU) that equals one process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines.artifacts import current_production, load_ref, read_artifact_manifest
from pipelines.config import PROJECT_ROOT, ConfigError
from pipelines.config.training import TrainingConfig
from pipelines.finetune.run import launch_training
from pipelines.privacy import read_ledger
from pipelines.storage import LocalObjectStore
from pipelines.train.spec import TrainError, TrainSpec

from test_finetune_resume import RUN_ID, cli_env, stores, train_command  # noqa: F401 (stores: a fixture)


def _run(tmp_path: Path, root: Path, name: str, devices: int) -> dict:
    env = {**cli_env(tmp_path, root, tmp_path / f"ckpt-{name}"), "PIPELINE__TRAINING__DEVICES": str(devices),
           "PIPELINE__TRAINING__GRAD_SAMPLE_MODE": "hooks"}  # bk clipping trains in one process only
    done = subprocess.run(train_command(), env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, "\n".join(l for l in done.stderr.splitlines() if "rror" in l)[-3000:]
    return json.loads(done.stdout)  # the CLI's stdout is its result alone: the ranks' result JSON stays out of it


def _artifact(config, root: Path) -> tuple[dict, list]:
    store = LocalObjectStore(root / config.storage.bucket)
    record = current_production(store, "legal")
    manifest = read_artifact_manifest(store, load_ref(store, "legal", record.artifact_id))
    ledger = read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal")
    return manifest, ledger


@pytest.mark.slow
def test_two_processes_train_the_run_one_process_trains(tmp_path, stores):  # noqa: F811
    config, one_root, two_root = stores
    _run(tmp_path, one_root, "one", 1)
    _run(tmp_path, two_root, "two", 2)
    (one, one_ledger), (two, two_ledger) = _artifact(config, one_root), _artifact(config, two_root)
    assert (one["dp"]["world_size"], two["dp"]["world_size"]) == (1, 2)
    assert one["dp"]["samples_per_s"] > 0 and two["dp"]["samples_per_s"] > 0
    # Same q, sigma, steps and epsilon: the accountant does not see the world size; one ledger entry each.
    same = ("sample_rate", "noise_multiplier", "steps", "epsilon", "epsilon_training", "delta", "max_grad_norm")
    assert {k: two["dp"][k] for k in same} == {k: one["dp"][k] for k in same}
    assert [r.entry.run_id for r in one_ledger] == [r.entry.run_id for r in two_ledger] == [RUN_ID]
    assert one_ledger[0].done["steps"] == two_ledger[0].done["steps"] == one["dp"]["steps"]
    assert sorted(one["files"]) == sorted(two["files"])


def test_bk_clipping_is_refused_with_more_than_one_device():
    with pytest.raises(ConfigError, match="training.devices=2 with grad_sample_mode bk"):
        TrainingConfig(devices=2, grad_sample_mode="bk")


def test_launch_refuses_a_run_inside_a_torchrun_job(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    spec = TrainSpec(model_dir="m", out_dir=str(tmp_path / "o"), checkpoint_dir=str(tmp_path / "c"),
                     train_path="t.jsonl", noise_multiplier=1.0)
    with pytest.raises(TrainError, match="launches its own torchrun job"):
        launch_training(spec, devices=2, folder=tmp_path)


@pytest.mark.parametrize("devices", [0, -1, 1.5, True, "2"])
def test_devices_is_a_positive_integer(devices):
    with pytest.raises(ConfigError, match=r"training.devices=.*use an integer >= 1"):
        TrainingConfig(devices=devices)
