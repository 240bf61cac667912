"""The torchrun plumbing of a DP training job: join the process group, and Poisson-sample this rank's shard.

The training loop itself is :func:`pipelines.train.trainer.train` (one loop for 1 and N processes): with
``WORLD_SIZE`` > 1 it joins the job with :func:`distributed_context` and :func:`pipelines.train.session.prepare`
wraps the model in Opacus' DPDDP (``training.sharding: none``) or shards it with FSDP2 (``fsdp``), drawing each
rank's batches from :func:`distributed_poisson_loader`.

Privacy semantics are those of a single process on the global batch (Opacus' distributed design):

* Poisson sampling over the whole dataset: each rank owns a fixed shard and keeps each of its examples with
  probability ``sample_rate``, so every example is still drawn independently with the single-process rate, and the
  accountant sees the same ``(sample_rate, noise_multiplier, steps)``.
* Each rank clips its per-sample gradients and sums them; the noise (``std = noise_multiplier * max_grad_norm``) is
  added once per coordinate, the sums are reduced over the ranks, and the result is divided by the expected
  *global* batch size. The update therefore equals the single-process update on the union of the local batches
  (``tests/pipelines/train/test_ddp.py`` checks it to float tolerance, with and without noise).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from pipelines.config import ConfigError

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job (``world_size == 1`` and ``initialized=False``: a plain process)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    initialized: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _resolve_backend(backend: str, device_type: str) -> str:
    if backend == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and device_type != "cuda":
        raise ConfigError("backend 'nccl' needs CUDA devices; use 'gloo' (or 'auto') on CPU")
    return backend


@contextlib.contextmanager
def distributed_context(
    *, backend: str = "auto", device: str | None = None, timeout_s: int = 1800
) -> Iterator[DistributedContext]:
    """Join the torchrun job described by the environment, and leave it on exit.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by torchrun). With
    ``WORLD_SIZE`` unset or 1 no process group is created and training runs as a single process.

    Args:
        backend: ``auto`` (nccl on CUDA, gloo on CPU), ``gloo`` or ``nccl``.
        device: ``cuda`` or ``cpu``; ``None`` picks CUDA when available. Each rank takes ``cuda:<LOCAL_RANK>``.
        timeout_s: collective timeout.

    Yields:
        The process's :class:`DistributedContext`.

    Raises:
        ConfigError: the environment is incomplete or asks for more GPUs than the host has.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type not in ("cuda", "cpu"):
        raise ConfigError(f"device={device!r}: use 'cuda' or 'cpu'")
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for but CUDA is not available; use device 'cpu'")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) visible: "
                              "lower --nproc_per_node")
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    resolved = _resolve_backend(backend, device_type)
    if world_size <= 1:
        yield DistributedContext(0, 1, 0, resolved, torch_device, initialized=False)
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world_size} but {name} is not set: start the job with torchrun")
    kwargs: dict[str, Any] = {}
    if resolved == "nccl":
        kwargs["device_id"] = torch_device  # binds the communicator to this GPU (no guessing by rank)
    torch.distributed.init_process_group(
        backend=resolved, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s), **kwargs
    )
    try:
        yield DistributedContext(rank, world_size, local_rank, resolved, torch_device, initialized=True)
    finally:
        torch.distributed.destroy_process_group()


def distributed_poisson_loader(
    dataset: Dataset, *, sample_rate: float, steps: int, shuffle_seed: int, generator: Any,
    collate_fn: Callable | None,
) -> DataLoader:
    """A loader over this rank's shard that yields empty batches too, as the single-process Poisson loader does.

    Opacus 1.6.0's ``DistributedUniformWithReplacementSampler`` skips a rank's empty draw and takes the next one,
    so every rank would contribute at least one example per step: inclusion would no longer be independent at the
    accounted rate (it matters for small shards), and ranks could reach the end of a pass at different steps.
    """
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
    from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler
    from torch.utils.data.dataloader import default_collate

    class _Sampler(DistributedUniformWithReplacementSampler):
        def __iter__(self) -> Iterator[torch.Tensor]:
            if self.shuffle:
                order = torch.randperm(self.total_size, generator=torch.Generator().manual_seed(
                    self.shuffle_seed + self.epoch))
            else:
                order = torch.arange(self.total_size)
            shard = order[self.rank : self.total_size : self.num_replicas]
            for _ in range(self.num_batches):
                mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
                yield shard[mask.nonzero(as_tuple=False).reshape(-1)]

    first = dataset[0]
    sampler = _Sampler(total_size=len(dataset), sample_rate=sample_rate,  # type: ignore[arg-type]
                       shuffle_seed=shuffle_seed, steps=steps, generator=generator)
    collate = wrap_collate_with_empty(
        collate_fn=collate_fn or default_collate, sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
        dtypes=[dtype_safe(x) for x in first],
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
