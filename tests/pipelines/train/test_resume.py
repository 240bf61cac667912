"""SIGKILL the training entry point mid-run, resume: the same weights and steps as an uninterrupted run.

The helpers (``write_toy_split``, ``spec_values``, ``kill_at``, ``assert_same_output``) are shared with
``test_trainer_bk.py``, which runs the same check with book-keeping clipping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.train.data import write_jsonl
from pipelines.train.spec import TrainError, TrainResult, TrainSpec
from pipelines.train.trainer import fit

ROOT = Path(__file__).resolve().parents[3]


def write_toy_split(tmp_path: Path, toy) -> None:
    """130 toy texts: 100 to ``train.jsonl``, 30 to ``eval.jsonl``."""
    examples = toy.texts(130, seed=3)
    write_jsonl(tmp_path / "train.jsonl", examples[:100])
    write_jsonl(tmp_path / "eval.jsonl", examples[100:])


def spec_values(tmp_path: Path, model_dir: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """A 3-epoch, 10-steps-per-epoch noisy run over the split of :func:`write_toy_split`."""
    values = dict(model_dir=str(model_dir), out_dir=str(tmp_path / name / "out"),
                  checkpoint_dir=str(tmp_path / name / "ck"), train_path=str(tmp_path / "train.jsonl"),
                  eval_path=str(tmp_path / "eval.jsonl"), epochs=3, batch_size=10, learning_rate=2e-2,
                  min_learning_rate=1e-6, noise_multiplier=0.7, delta=1e-3, seed=7, num_threads=1,
                  weight_terms=["superb"], weight_factor=1.5)
    values.update(overrides)
    return values


def kill_at(tmp_path: Path, values: dict[str, Any], line_prefix: str) -> None:
    """Run ``python -m pipelines.train`` on ``values`` and SIGKILL it when it logs a line starting ``line_prefix``."""
    spec_path = tmp_path / f"{Path(values['checkpoint_dir']).parent.name}.spec.json"
    spec_path.write_text(json.dumps(values), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.train", "--spec", str(spec_path)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(line_prefix):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert (Path(values["checkpoint_dir"]) / "last.pt").is_file()
    assert not (Path(values["out_dir"]) / "history.json").exists()  # it really died mid-run


def assert_same_output(resumed: TrainResult, straight: TrainResult) -> None:
    """Same history and epsilon; bit-identical weights on the CPU. On a GPU, cuBLAS and the embedding backward's
    atomic adds sum in a varying order, so two uninterrupted runs already differ in the last bits: the weights must
    then agree to float32 rounding (the history, metrics and epsilon still match exactly)."""
    import torch
    from safetensors.torch import load_file

    assert resumed.history == straight.history and resumed.epsilon == straight.epsilon
    a = load_file(str(Path(resumed.out_dir) / "model.safetensors"))
    b = load_file(str(Path(straight.out_dir) / "model.safetensors"))
    assert a.keys() == b.keys()
    if torch.cuda.is_available():
        assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    else:
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, classifier_dir, toy):
    write_toy_split(tmp_path, toy)
    values = spec_values(tmp_path, classifier_dir, "killed")
    # 10 steps per epoch: step 13 is in epoch 2, after the epoch-1 checkpoint.
    kill_at(tmp_path, values, "[train] epoch=2 step=13 ")

    lines = []
    resumed = fit(TrainSpec.from_dict(values), log=lines.append)
    assert any("resumed from" in line and "epoch=1 step=10" in line for line in lines)
    assert not any(line.startswith("[train] epoch=1 step=") for line in lines)
    straight = fit(TrainSpec.from_dict(spec_values(tmp_path, classifier_dir, "straight")), log=lambda line: None)

    assert resumed.steps == straight.steps == 30
    assert_same_output(resumed, straight)
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


@pytest.mark.gpu
def test_a_killed_cuda_run_resumes(tmp_path, classifier_dir, toy):
    # The RNG states come back from the checkpoint on CPU: loaded onto the GPU, numpy's key and the generators'
    # states could not be restored ("can't convert cuda:0 device type tensor to numpy").
    write_toy_split(tmp_path, toy)
    values = spec_values(tmp_path, classifier_dir, "killed", device="cuda")
    kill_at(tmp_path, values, "[train] epoch=2 step=13 ")

    lines = []
    resumed = fit(TrainSpec.from_dict(values), log=lines.append)
    assert any("resumed from" in line and "epoch=1 step=10" in line for line in lines)
    straight = fit(TrainSpec.from_dict(spec_values(tmp_path, classifier_dir, "straight", device="cuda")),
                   log=lambda line: None)
    assert resumed.steps == straight.steps == 30
    assert resumed.epsilon == straight.epsilon
