"""The one entry point trains in one process or as every rank of a torchrun job (gloo on CPU here)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from pipelines.train.spec import TrainError, TrainSpec
from pipelines.train.trainer import train, world_size


def _spec(model_dir: str, folder: Path, examples: list[dict], **kw) -> TrainSpec:
    values = dict(model_dir=model_dir, out_dir=str(folder / "out"), checkpoint_dir=str(folder / "ck"),
                  train_examples=examples[:40], eval_examples=examples[40:], noise_multiplier=0.8, delta=1e-3,
                  seed=0, epochs=2, batch_size=8, device="cpu", log_every=1000, num_threads=1)
    values.update(kw)
    return TrainSpec(**values)


def _worker(rank: int, size: int, port: int, model_dir: str, folder: str, examples: list[dict], attempt: str) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    result = train(_spec(model_dir, Path(folder), examples))
    (Path(folder) / f"{attempt}-rank{rank}.json").write_text(json.dumps(result.to_dict(), sort_keys=True))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_train_one_model_at_the_single_process_rate(tmp_path, classifier_dir, toy, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    examples = toy.texts(48)
    single = train(_spec(str(classifier_dir), tmp_path / "single", examples))
    # A second job with the same spec (a retried task) resumes from the last checkpoint: nothing left to train.
    for attempt in ("first", "rerun"):
        mp.spawn(_worker, args=(2, _free_port(), str(classifier_dir), str(tmp_path), examples, attempt), nprocs=2,
                 join=True)
    results = {name: json.loads((tmp_path / f"{name}.json").read_text())
               for name in ("first-rank0", "first-rank1", "rerun-rank0", "rerun-rank1")}
    first = results["first-rank0"]
    assert first["world_size"] == 2 and first["samples_per_s"] > 0 and single.world_size == 1
    # The rerun trained nothing: no throughput to report.
    assert results["rerun-rank0"]["samples_per_s"] == results["rerun-rank1"]["samples_per_s"] == 0.0
    # Every rank ends with the same model and the same accounting; a rerun resumes and changes nothing.
    assert all({**r, "samples_per_s": 0} == {**first, "samples_per_s": 0} for r in results.values())
    # Same q, sigma and steps as one process, so the same epsilon (the accountant does not see the world size).
    assert (first["sample_rate"], first["noise_multiplier"], first["steps"]) == (
        single.sample_rate, single.noise_multiplier, single.steps)
    assert first["epsilon"] == pytest.approx(single.epsilon, rel=1e-9)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in Path(single.out_dir).iterdir())


def test_world_size_comes_from_torchrun(monkeypatch, tmp_path, classifier_dir, toy):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TrainError, match="WORLD_SIZE='two': expected an integer"):
        train(_spec(str(classifier_dir), tmp_path, toy.texts(8)))
