"""SIGKILL the training entry point mid-run, resume: the same weights and steps as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.train.data import write_jsonl
from pipelines.train.trainer import TrainError, TrainSpec, fit

ROOT = Path(__file__).resolve().parents[3]


def _spec_values(tmp_path, model_dir, name):
    return dict(model_dir=str(model_dir), out_dir=str(tmp_path / name / "out"),
                checkpoint_dir=str(tmp_path / name / "ck"), train_path=str(tmp_path / "train.jsonl"),
                eval_path=str(tmp_path / "eval.jsonl"), epochs=3, batch_size=10, learning_rate=2e-2,
                min_learning_rate=1e-6, noise_multiplier=0.7, delta=1e-3, seed=7, num_threads=1,
                weight_terms=["superb"], weight_factor=1.5)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, classifier_dir, toy):
    import torch
    from safetensors.torch import load_file

    examples = toy.texts(130, seed=3)
    write_jsonl(tmp_path / "train.jsonl", examples[:100])
    write_jsonl(tmp_path / "eval.jsonl", examples[100:])
    values = _spec_values(tmp_path, classifier_dir, "killed")
    (tmp_path / "spec.json").write_text(json.dumps(values), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.train", "--spec", str(tmp_path / "spec.json")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # 10 steps per epoch: step 13 is in epoch 2, after the epoch-1 checkpoint.
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("[train] epoch=2 step=13 "):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    killed = Path(values["checkpoint_dir"])
    assert (killed / "last.pt").is_file()
    assert not (Path(values["out_dir"]) / "history.json").exists()  # it really died mid-run

    lines = []
    resumed = fit(TrainSpec.from_dict(values), log=lines.append)
    assert any("resumed from" in line and "epoch=1 step=10" in line for line in lines)
    assert not any(line.startswith("[train] epoch=1 step=") for line in lines)
    straight = fit(TrainSpec.from_dict(_spec_values(tmp_path, classifier_dir, "straight")), log=lambda line: None)

    assert resumed.steps == straight.steps == 30
    assert resumed.history == straight.history and resumed.epsilon == straight.epsilon
    a = load_file(str(Path(values["out_dir"]) / "model.safetensors"))
    b = load_file(str(Path(straight.out_dir) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The checkpoint belongs to this spec: another learning rate must not continue from it.
    with pytest.raises(TrainError, match="different run"):
        fit(TrainSpec.from_dict({**values, "learning_rate": 1e-2}), log=lambda line: None)


def test_entry_point_reports_a_bad_spec_without_traceback(tmp_path):
    from pipelines.train.cli import run_main

    (tmp_path / "spec.json").write_text(json.dumps({"model_dir": "m", "out_dir": "o", "checkpoint_dir": "c",
                                                    "train_path": str(tmp_path / "none.jsonl"),
                                                    "noise_multiplier": 1.0}))
    assert run_main(["--spec", str(tmp_path / "spec.json")]) == 2
    (tmp_path / "bad.json").write_text("{nope")
    assert run_main(["--spec", str(tmp_path / "bad.json")]) == 2
