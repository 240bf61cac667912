"""DP training on 2 gloo processes gives the same update as one process on the same batch (Opacus' DPDDP)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from pipelines.config import ConfigError
from pipelines.train.ddp import (
    DistributedDPConfig,
    distributed_config_from_sections,
    distributed_context,
    make_private_distributed,
    train_private_distributed,
)

N = 8  # batch_size = N makes the Poisson sample rate 1: every example is in every batch, on 1 or 2 ranks

# name -> (task, config). Noise is seeded: rank 0 draws exactly what the single process draws.
SCENARIOS = {
    "hooks_no_noise": ("classify", dict(noise_multiplier=0.0, optimizer="sgd", learning_rate=0.5, max_grad_norm=0.1)),
    "hooks_noise": ("classify", dict(noise_multiplier=1.3, noise_seed=7, optimizer="adamw", learning_rate=0.05)),
    "ghost_lm_noise": ("lm", dict(noise_multiplier=0.7, noise_seed=11, optimizer="sgd", learning_rate=0.5,
                                  grad_sample_mode="ghost", max_grad_norm=0.5)),
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _data(task: str) -> TensorDataset:
    generator = torch.Generator().manual_seed(123)
    if task == "classify":
        return TensorDataset(torch.randn(N, 4, generator=generator), torch.randint(0, 3, (N,), generator=generator))
    return TensorDataset(torch.randint(0, 11, (N, 6), generator=generator))


class _TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 5)
        self.head = nn.Linear(5, 11)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(tokens)))


def _model(task: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if task == "classify":
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    return _TinyLM()


def _forward(task: str):
    if task == "classify":
        return lambda model, batch: (model(batch[0]), batch[1])
    # Opacus' ghost embedding norm calls .view() on the ids: a sliced (non-contiguous) tensor fails there.
    return lambda model, batch: (model(batch[0][:, :-1].contiguous()), batch[0][:, 1:].contiguous())


def _train(name: str, *, context, model_seed: int, **changes):
    task, overrides = SCENARIOS[name]
    config = DistributedDPConfig(batch_size=N, steps=2, seed=0, sampling_seed=3, **{**overrides, **changes})
    return train_private_distributed(
        model=_model(task, model_seed), dataset=_data(task), forward=_forward(task), config=config, context=context
    )


def _single(name: str, monkeypatch, **changes):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with distributed_context(backend="gloo", device="cpu") as context:
        assert not context.initialized
        return _train(name, context=context, model_seed=0, **changes)


def _worker(rank: int, world_size: int, port: int, out: str, names: list[str]) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    # One process group for all scenarios: re-creating it on the same port races with the peer's teardown.
    with distributed_context(backend="gloo", device="cpu", timeout_s=30) as context:
        for name in names:
            # Each rank initialises differently: DPDDP must broadcast rank 0's weights (seed 0, as the single run).
            model, result = _train(name, context=context, model_seed=rank)
            torch.save(model.state_dict(), Path(out) / f"{name}-rank{rank}.pt")
            (Path(out) / f"{name}-rank{rank}.json").write_text(json.dumps(
                {"epsilon": result.epsilon, "sample_rate": result.sample_rate, "steps": result.steps,
                 "samples": result.samples, "world_size": result.world_size}))
        # 64 examples at rate 1/64 over 2 shards: many local draws are empty and must still be yielded.
        private = make_private_distributed(
            model=_model("classify", 0), dataset=TensorDataset(torch.randn(64, 4), torch.zeros(64, dtype=torch.long)),
            config=DistributedDPConfig(batch_size=1, sampling_seed=5), context=context,
        )
        sizes = [len(batch[0]) for batch in private.data_loader]
        (Path(out) / f"poisson-rank{rank}.json").write_text(json.dumps(
            {"sizes": sizes, "sample_rate": private.sample_rate}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out), list(SCENARIOS)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_processes_give_the_single_process_update(name, two_process_run, monkeypatch):
    single_model, single = _single(name, monkeypatch)
    expected = single_model.state_dict()
    initial = _model(SCENARIOS[name][0], 0).state_dict()
    for rank in (0, 1):
        got = torch.load(two_process_run / f"{name}-rank{rank}.pt")
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            assert not torch.equal(value, initial[key]), f"{key} did not move: the comparison would prove nothing"
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{name} rank {rank}: {key}")
        meta = json.loads((two_process_run / f"{name}-rank{rank}.json").read_text())
        assert meta["world_size"] == 2
        assert meta["sample_rate"] == single.sample_rate == 1.0
        assert meta["steps"] == single.steps == 2
        assert meta["samples"] == single.samples == 2 * N  # both steps timed; Poisson at rate 1 keeps all 8
        assert meta["epsilon"] == pytest.approx(single.epsilon, rel=1e-12)
    if SCENARIOS[name][1]["noise_multiplier"] == 0:
        assert math.isinf(single.epsilon)
    else:
        assert math.isfinite(single.epsilon)


def test_the_noise_matters_so_the_match_is_not_trivial(two_process_run, monkeypatch):
    """Another noise draw (as a second rank adding its own noise would give) moves the weights beyond tolerance."""
    other_draw, _ = _single("hooks_noise", monkeypatch, noise_seed=8)
    got = torch.load(two_process_run / "hooks_noise-rank0.pt")
    differences = [(got[k] - v).abs().max().item() for k, v in other_draw.state_dict().items()]
    assert min(differences) > 1e-3


def test_distributed_poisson_yields_empty_local_batches(two_process_run):
    """Opacus 1.6.0's distributed sampler would skip empty draws (at least one example per rank and step)."""
    draws = [json.loads((two_process_run / f"poisson-rank{rank}.json").read_text()) for rank in (0, 1)]
    for draw in draws:
        assert draw["sample_rate"] == 1 / 64
        assert len(draw["sizes"]) == 64  # one batch per step of the pass, empty or not
        assert 0 in draw["sizes"]
    assert draws[0]["sizes"] != draws[1]["sizes"]  # each rank has its own sampling stream


def test_config_from_sections_merges_the_domain_block():
    config = distributed_config_from_sections(
        training={"distributed": {"batch_size": 256, "grad_sample_mode": "ghost", "noise_multiplier": 0.9}},
        domain_training={"epochs": 3, "distributed": {"noise_multiplier": 1.1}},
    )
    assert (config.batch_size, config.grad_sample_mode, config.noise_multiplier) == (256, "ghost", 1.1)
    assert distributed_config_from_sections(training={}) == DistributedDPConfig()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grad_sample_mode": "functorch"}, "training.distributed.grad_sample_mode='functorch'"),
        ({"backend": "mpi"}, "training.distributed.backend='mpi'"),
        ({"batch_size": 0}, "training.distributed.batch_size=0"),
        ({"noise_multiplier": -1}, "training.distributed.noise_multiplier=-1"),
        ({"delta": "tiny"}, "delta='tiny': expected a number"),
        ({"secure_mode": True, "noise_seed": 1}, "secure_mode draws its own randomness"),
        ({"nproc": 2}, "unknown key(s) ['nproc']"),
    ],
)
def test_bad_config_names_the_key(values, message):
    with pytest.raises(ConfigError) as excinfo:
        distributed_config_from_sections(training={"distributed": values})
    assert message in str(excinfo.value)


def test_a_number_written_without_a_dot_is_a_number():
    # YAML 1.1 reads 1e-5 as text; the config loader takes it as the number it means.
    assert distributed_config_from_sections(training={"distributed": {"delta": "1e-5"}}).delta == 1e-5


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
