"""DP training on 2 gloo processes through the one entry point (``train``) gives the single-process update.

Every scenario trains at sample rate 1 (``batch_size`` = the training set), so one process and the union of the two
ranks' Poisson draws hold the same examples each step, and the noise is seeded: what differs is only how the
clipped sum is computed (one process, DPDDP's all-reduce, or FSDP2 shards).
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pipelines.config import ConfigError
from pipelines.train.ddp import distributed_context, distributed_poisson_loader
from pipelines.train.spec import TrainError, TrainSpec
from pipelines.train.trainer import train

N_TRAIN = 16

# name -> (model fixture, examples, spec values). Noise is seeded (spec.seed): rank 0 draws what one process draws
# (DPDDP), or every rank draws the whole noise tensor and keeps its shard (FSDP). No noise-free classifier: AdamW turns
# the rounding-sized gradients of a few BERT biases (summed in another order over two ranks) into lr-sized steps.
SCENARIOS = {
    "hooks_lm_no_noise": ("lm", "qa", dict(noise_multiplier=0.0, learning_rate=0.02)),
    "hooks_noise": ("classifier", "texts", dict(noise_multiplier=0.8, learning_rate=0.05)),
    "ghost_lm_noise": ("lm", "qa", dict(noise_multiplier=0.7, learning_rate=0.02, grad_sample_mode="ghost")),
    "fsdp_noise": ("classifier", "texts", dict(noise_multiplier=0.8, learning_rate=0.05, grad_sample_mode="ghost",
                                               sharding="fsdp")),
    "fsdp_lm_no_noise": ("lm", "qa", dict(noise_multiplier=0.0, learning_rate=0.02, grad_sample_mode="ghost",
                                          sharding="fsdp")),
}


def _spec(name: str, model_dir: str, folder: Path, examples: list[dict], **changes) -> TrainSpec:
    values = dict(model_dir=model_dir, out_dir=str(folder / "out"), checkpoint_dir=str(folder / "ck"),
                  train_examples=examples[:N_TRAIN], eval_examples=examples[N_TRAIN:], delta=1e-3, seed=0, epochs=2,
                  batch_size=N_TRAIN, schedule="constant", device="cpu", log_every=1000, num_threads=1)
    values.update(SCENARIOS[name][2])
    values.update(changes)
    return TrainSpec(**values)


def _worker(rank: int, size: int, ports: list[int], jobs: list[tuple[str, str, str, list[dict]]]) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1")
    for port, (name, model_dir, folder, examples) in zip(ports, jobs):
        # A fresh port per job: train() joins and leaves a process group each time, and re-creating it on the same
        # port races with the peer's teardown.
        os.environ["MASTER_PORT"] = str(port)
        result = train(_spec(name, model_dir, Path(folder), examples))
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result.to_dict(), sort_keys=True))
    os.environ["MASTER_PORT"] = str(ports[-1])
    with distributed_context(backend="gloo", device="cpu", timeout_s=30):
        # 64 examples at rate 1/64 over 2 shards: many local draws are empty and must still be yielded.
        loader = distributed_poisson_loader(
            torch.utils.data.TensorDataset(torch.randn(64, 4)), sample_rate=1 / 64, steps=64, shuffle_seed=0,
            generator=torch.Generator().manual_seed(5 + 1009 * rank), collate_fn=None)
        sizes = [len(batch[0]) for batch in loader]
        (Path(jobs[0][2]).parent / f"poisson-rank{rank}.json").write_text(json.dumps({"sizes": sizes}))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _examples(kind: str, toy) -> list[dict]:
    return toy.texts(N_TRAIN + 8) if kind == "texts" else toy.qa(N_TRAIN + 8)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, classifier_nodropout_dir, lm_dir, toy) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    dirs = {"classifier": str(classifier_nodropout_dir), "lm": str(lm_dir)}
    jobs = [(name, dirs[model], str(root / name), _examples(kind, toy))
            for name, (model, kind, _values) in SCENARIOS.items()]
    mp.spawn(_worker, args=(2, _free_ports(len(jobs) + 1), jobs), nprocs=2, join=True)
    return root


def _single(name: str, folder: Path, classifier_dir: Path, lm_dir: Path, toy, monkeypatch, **changes):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model, kind, _values = SCENARIOS[name]
    model_dir = str(classifier_dir if model == "classifier" else lm_dir)
    changes.setdefault("sharding", "none")  # one process holds the whole model: the unsharded reference
    return train(_spec(name, model_dir, folder, _examples(kind, toy), **changes))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_processes_give_the_single_process_update(name, two_process_runs, tmp_path, classifier_nodropout_dir,
                                                       lm_dir, toy, monkeypatch):
    single = _single(name, tmp_path, classifier_nodropout_dir, lm_dir, toy, monkeypatch)
    expected = _weights(Path(single.out_dir))
    start = _weights(Path(classifier_nodropout_dir if SCENARIOS[name][0] == "classifier" else lm_dir))
    got = _weights(two_process_runs / name / "out")
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if key in start:
            assert not torch.equal(value, start[key]), f"{key} did not move: the comparison would prove nothing"
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    ranks = [json.loads((two_process_runs / name / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in ranks:
        assert result["world_size"] == 2
        # Same q, sigma and steps as one process, so the same epsilon (the accountant does not see the world size).
        assert (result["sample_rate"], result["noise_multiplier"], result["steps"]) == (
            single.sample_rate, single.noise_multiplier, single.steps) == (1.0, SCENARIOS[name][2]["noise_multiplier"], 2)
        if math.isinf(single.epsilon):
            assert math.isinf(result["epsilon"]) and SCENARIOS[name][2]["noise_multiplier"] == 0
        else:
            assert result["epsilon"] == pytest.approx(single.epsilon, rel=1e-12)
        metric = result["metrics"]["metric"]
        assert result["metrics"][metric] == pytest.approx(single.metrics[metric], rel=1e-4)
    assert {**ranks[0], "samples_per_s": 0} == {**ranks[1], "samples_per_s": 0}


def test_the_noise_matters_so_the_match_is_not_trivial(two_process_runs, tmp_path, classifier_nodropout_dir, lm_dir,
                                                      toy, monkeypatch):
    """Another noise draw (as a second rank adding its own noise would give) moves the weights beyond tolerance."""
    for name in ("hooks_noise", "fsdp_noise"):
        other = _single(name, tmp_path / name, classifier_nodropout_dir, lm_dir, toy, monkeypatch, seed=1)
        got = _weights(two_process_runs / name / "out")
        differences = [(got[k] - v).abs().max().item() for k, v in _weights(Path(other.out_dir)).items()]
        assert max(differences) > 1e-3


def test_distributed_poisson_yields_empty_local_batches(two_process_runs):
    """Opacus 1.6.0's distributed sampler would skip empty draws (at least one example per rank and step)."""
    draws = [json.loads((two_process_runs / f"poisson-rank{rank}.json").read_text())["sizes"] for rank in (0, 1)]
    for sizes in draws:
        assert len(sizes) == 64  # one batch per step of the pass, empty or not
        assert 0 in sizes
    assert draws[0] != draws[1]  # each rank has its own sampling stream


def test_sharding_needs_ghost_clipping_and_several_processes(tmp_path, classifier_nodropout_dir, toy, monkeypatch):
    with pytest.raises(TrainError, match="sharding=fsdp clips with Opacus' ghost clipping for FSDP: set "
                                         "grad_sample_mode ghost"):
        _spec("hooks_noise", str(classifier_nodropout_dir), tmp_path, toy.texts(24), sharding="fsdp")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(TrainError, match="sharding=fsdp splits the model over the ranks of a torchrun job"):
        train(_spec("fsdp_noise", str(classifier_nodropout_dir), tmp_path, toy.texts(24)))


def test_nccl_on_cpu_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="backend 'nccl' needs CUDA"):
        with distributed_context(backend="nccl", device="cpu"):
            pass


def test_multi_process_environment_without_master_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR is not set: start the job with torchrun"):
        with distributed_context(backend="gloo", device="cpu"):
            pass


@pytest.mark.parametrize(("values", "message"), [
    ({"sharding": "zero3"}, r"^training\.sharding='zero3': use one of none, fsdp$"),
    ({"sharding": "fsdp", "devices": 1, "grad_sample_mode": "ghost"}, r"set training\.devices >= 2 \(now 1\)"),
    ({"sharding": "fsdp", "devices": 2, "grad_sample_mode": "hooks"}, r"training\.grad_sample_mode ghost \(now hooks\)"),
])
def test_training_sharding_is_validated_when_the_config_loads(values, message):
    from pipelines.config.training import TrainingConfig

    with pytest.raises(ConfigError, match=message):
        TrainingConfig(**values)
    assert TrainingConfig(sharding="fsdp", devices=2, grad_sample_mode="ghost").sharding == "fsdp"
