"""Differentially private training on several processes (torchrun): Opacus' DPDDP + DistributedDPOptimizer.

Start one process per GPU (``python -m torch.distributed.run --nproc_per_node=N ...``) or per CPU worker
(gloo); each process calls :func:`distributed_context` and then :func:`train_private_distributed` with the same
model, dataset and :class:`DistributedDPConfig`. Without torchrun's environment (``WORLD_SIZE`` unset or 1) the
same call trains in one process with plain Opacus, so one code path serves both.

Privacy semantics are those of a single process on the global batch (Opacus' distributed design):

* Poisson sampling over the whole dataset: each rank owns a fixed shard (``DistributedUniformWithReplacementSampler``)
  and keeps each of its examples with probability ``sample_rate``, so every example is still drawn independently
  with the single-process rate, and the accountant sees the same ``(sample_rate, noise_multiplier, steps)``.
* Each rank clips its per-sample gradients and sums them; rank 0 alone adds the Gaussian noise
  (``std = noise_multiplier * max_grad_norm``), the sums are all-reduced, and the result is divided by the expected
  *global* batch size. The update therefore equals the single-process update on the union of the local batches
  (``tests/pipelines/train/test_ddp.py`` checks it to float tolerance, with and without noise).

The noise generator is seeded from OS entropy unless ``noise_seed`` is set: a seed in config would let anyone who
reads the config regenerate (and subtract) the noise, so a fixed ``noise_seed`` is for tests and benchmarks only.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pipelines.config import ConfigError, build_stage_config

BACKENDS = ("auto", "gloo", "nccl")
GRAD_SAMPLE_MODES = ("hooks", "ghost")
OPTIMIZERS = ("sgd", "adamw")
ACCOUNTANTS = ("rdp", "prv")

# ``forward(model, batch) -> (logits, targets)``: logits [B, C] (classification) or [B, T, C] (causal LM).
ForwardFn = Callable[[nn.Module, Sequence[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DistributedDPConfig:
    """One DP training run spread over the processes of a torchrun job (config ``training.distributed``).

    Attributes:
        noise_multiplier: Gaussian noise std divided by ``max_grad_norm`` (0 disables noise: no privacy).
        max_grad_norm: per-sample L2 clipping bound.
        batch_size: expected *global* batch (all ranks together); ``sample_rate = 1 / ceil(N / batch_size)``.
        steps: optimizer steps; ``None`` runs one epoch's worth (``1 / sample_rate`` steps).
        learning_rate: optimizer learning rate.
        optimizer: ``sgd`` or ``adamw``.
        weight_decay: AdamW weight decay (ignored by SGD).
        grad_sample_mode: Opacus ``hooks`` (per-sample gradients) or ``ghost`` (ghost clipping, less memory).
        backend: ``auto`` (nccl with CUDA, gloo on CPU), ``gloo`` or ``nccl``.
        seed: model initialisation and shard shuffling (same on every rank).
        sampling_seed: Poisson sampling masks (each rank derives its own stream); ``None`` draws from OS entropy.
        noise_seed: noise generator seed for tests and benchmarks only; ``None`` (production) draws from OS entropy.
        secure_mode: Opacus' cryptographically safe noise and sampling (slower; seeds are then refused).
        delta: delta for the epsilon reported at the end.
        accountant: ``rdp`` or ``prv``.
        timeout_s: how long a collective waits for a lost peer before the job fails.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    batch_size: int = 64
    steps: int | None = None
    learning_rate: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    grad_sample_mode: str = "hooks"
    backend: str = "auto"
    seed: int = 0
    sampling_seed: int | None = None
    noise_seed: int | None = None
    secure_mode: bool = False
    delta: float = 1e-5
    accountant: str = "rdp"
    timeout_s: int = 1800

    def __post_init__(self) -> None:
        section = "training.distributed"
        if not (isinstance(self.noise_multiplier, (int, float)) and self.noise_multiplier >= 0):
            raise ConfigError(f"{section}.noise_multiplier={self.noise_multiplier!r}: use a number >= 0")
        if not (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0):
            raise ConfigError(f"{section}.max_grad_norm={self.max_grad_norm!r}: use a number > 0")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"{section}.batch_size={self.batch_size!r}: use an integer >= 1 (global batch)")
        if self.steps is not None and not (isinstance(self.steps, int) and self.steps >= 1):
            raise ConfigError(f"{section}.steps={self.steps!r}: use an integer >= 1, or null for one epoch")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ConfigError(f"{section}.learning_rate={self.learning_rate!r}: use a number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{section}.optimizer={self.optimizer!r}: use one of {OPTIMIZERS}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(f"{section}.grad_sample_mode={self.grad_sample_mode!r}: use one of {GRAD_SAMPLE_MODES}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"{section}.backend={self.backend!r}: use one of {BACKENDS}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"{section}.accountant={self.accountant!r}: use one of {ACCOUNTANTS}")
        if not (isinstance(self.delta, float) and 0 < self.delta < 1):
            raise ConfigError(f"{section}.delta={self.delta!r}: use a float in (0, 1), written 1.0e-5 in YAML "
                              "(YAML reads 1e-5 as text)")
        if self.secure_mode and (self.noise_seed is not None or self.sampling_seed is not None):
            raise ConfigError(f"{section}: secure_mode draws its own randomness; remove noise_seed and sampling_seed")
        if not (isinstance(self.timeout_s, int) and self.timeout_s >= 10):
            raise ConfigError(f"{section}.timeout_s={self.timeout_s!r}: use an integer >= 10")


def distributed_config_from_sections(
    *, training: Mapping[str, Any], domain_training: Mapping[str, Any] | None = None
) -> DistributedDPConfig:
    """Build the config from ``sections.training.distributed`` overridden by ``domains.<d>.training.distributed``.

    Args:
        training: the raw ``training`` section (``load_config().sections.training``).
        domain_training: the raw domain block (``load_config().domain(d).training``), if any.

    Returns:
        The validated config.

    Raises:
        ConfigError: a key is unknown or a value is invalid (the message names it).
    """
    merged: dict[str, Any] = {}
    for where, block in (("training", training), ("domains.<d>.training", domain_training or {})):
        sub = block.get("distributed") or {}
        if not isinstance(sub, Mapping):
            raise ConfigError(f"{where}.distributed: expected a mapping, got {type(sub).__name__}")
        merged.update(sub)
    return build_stage_config(DistributedDPConfig, "training.distributed", merged)


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


@dataclass
class PrivateTraining:
    """What :func:`make_private_distributed` returns: use these in place of the originals."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[..., torch.Tensor]
    data_loader: DataLoader
    privacy_engine: Any
    sample_rate: float
    ghost: bool


def _generator(seed: int | None, device: torch.device | str | None = None) -> torch.Generator:
    # The noise generator must live on the parameters' device (torch.normal refuses a CPU generator for CUDA).
    generator = torch.Generator(device=device) if device is not None else torch.Generator()
    generator.manual_seed(secrets.randbits(63) if seed is None else seed)
    return generator


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


def make_private_distributed(
    *,
    model: nn.Module,
    dataset: Dataset,
    config: DistributedDPConfig,
    context: DistributedContext,
    criterion: nn.Module | None = None,
    collate_fn: Callable | None = None,
) -> PrivateTraining:
    """Wrap model, optimizer, loss and a Poisson loader for DP training on this process's share of the job.

    The model is moved to ``context.device`` and, in a multi-process job, wrapped in Opacus' DPDDP (which
    broadcasts rank 0's weights, so all ranks start equal); ``make_private`` then picks the distributed optimizer
    (noise on rank 0 only, all-reduce of the clipped sums, division by the expected global batch). The sample rate
    is what Opacus derives for one process from ``batch_size``: ``1 / ceil(N / batch_size)``.

    Args:
        model: the module to train (its parameters with ``requires_grad`` are trained).
        dataset: map-style dataset of tensor tuples; the same object on every rank.
        config: the run's config.
        context: from :func:`distributed_context`.
        criterion: loss with ``reduction="mean"``; defaults to ``nn.CrossEntropyLoss()``.
        collate_fn: optional collate function for the loader.

    Returns:
        The wrapped objects and the sample rate used by the accountant.

    Raises:
        ValueError: the dataset is smaller than the batch, or nothing is trainable.
    """
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError("criterion must use reduction='mean' (Opacus rescales per-sample gradients for it)")
    size = len(dataset)  # type: ignore[arg-type]
    if size < config.batch_size:
        raise ValueError(f"dataset has {size} examples, fewer than batch_size={config.batch_size}: "
                         "lower training.distributed.batch_size")
    model = model.to(context.device)
    if context.initialized:
        model = DPDDP(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=config.learning_rate)
    else:
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    engine = PrivacyEngine(accountant=config.accountant, secure_mode=config.secure_mode)
    # Per-rank streams: ranks share the global RNG's seed (for the model), and equal streams would give every
    # rank the same inclusion mask over its shard.
    sampling_generator = engine.secure_rng if config.secure_mode else _generator(
        None if config.sampling_seed is None else config.sampling_seed * 1009 + context.rank)
    batches_per_pass = math.ceil(size / config.batch_size)
    if context.initialized:
        loader = distributed_poisson_loader(
            dataset, sample_rate=1 / batches_per_pass, steps=batches_per_pass, shuffle_seed=config.seed,
            generator=sampling_generator, collate_fn=collate_fn,
        )
    else:
        loader = DataLoader(dataset, batch_size=config.batch_size, collate_fn=collate_fn)
    wrapped = engine.make_private(
        module=model,
        optimizer=optimizer,
        criterion=criterion,
        data_loader=loader,
        noise_multiplier=float(config.noise_multiplier),
        max_grad_norm=float(config.max_grad_norm),
        poisson_sampling=not context.initialized,  # the distributed loader above is Poisson already
        grad_sample_mode=config.grad_sample_mode,
        noise_generator=None if config.secure_mode else _generator(config.noise_seed, next(model.parameters()).device),
    )
    if config.grad_sample_mode == "ghost":
        dp_model, dp_optimizer, dp_criterion, dp_loader = wrapped
    else:
        dp_model, dp_optimizer, dp_loader = wrapped
        dp_criterion = criterion
    if context.initialized:
        dp_model.forbid_grad_accumulation()  # what make_private does for its own Poisson loaders
    elif not config.secure_mode:
        dp_loader.batch_sampler.generator = sampling_generator
    return PrivateTraining(
        model=dp_model, optimizer=dp_optimizer, criterion=dp_criterion, data_loader=dp_loader,
        privacy_engine=engine, sample_rate=1 / batches_per_pass, ghost=config.grad_sample_mode == "ghost",
    )


def compute_loss(private: PrivateTraining, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The batch loss for ``logits`` [B, C] or [B, T, C]; for a causal LM the privacy unit is the sequence.

    Args:
        private: from :func:`make_private_distributed`.
        logits: model outputs.
        targets: class ids [B] or token ids [B, T].

    Returns:
        A tensor to call ``.backward()`` on (a ghost-clipping wrapper in ``ghost`` mode).
    """
    if logits.dim() == 3:
        batch, length = logits.shape[0], logits.shape[1]
        flat_logits, flat_targets = logits.reshape(batch * length, -1), targets.reshape(-1)
        if private.ghost:
            return private.criterion(flat_logits, flat_targets, shape=(batch, length))
        return private.criterion(flat_logits, flat_targets)
    return private.criterion(logits, targets)


@dataclass(frozen=True)
class DistributedTrainResult:
    """Summary of a run, identical on every rank except ``rank``.

    ``samples`` and ``seconds`` cover the timed steps (after ``warmup_steps``); ``losses`` are per-step losses
    averaged over the ranks that drew examples (NaN when none did); ``epsilon`` is for ``delta`` after all
    ``steps`` (``inf`` without noise).
    """

    rank: int
    world_size: int
    steps: int
    timed_steps: int
    samples: int
    seconds: float
    samples_per_s: float
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    epsilon: float
    delta: float
    accountant: str
    grad_sample_mode: str
    losses: tuple[float, ...] = field(default_factory=tuple)


def _batches(loader: DataLoader) -> Iterator[Any]:
    while True:  # Poisson loaders yield ~1/q batches per pass; a run may need several passes
        yield from loader


def _synchronize(context: DistributedContext) -> None:
    if context.device.type == "cuda":
        torch.cuda.synchronize(context.device)
    if context.initialized:
        torch.distributed.barrier()


def train_private_distributed(
    *,
    model: nn.Module,
    dataset: Dataset,
    forward: ForwardFn,
    config: DistributedDPConfig,
    context: DistributedContext,
    criterion: nn.Module | None = None,
    collate_fn: Callable | None = None,
    warmup_steps: int = 0,
) -> tuple[nn.Module, DistributedTrainResult]:
    """Train ``model`` with DP-SGD/DP-Adam on this process's share of the job.

    Every rank must call this with the same arguments (the dataset is sharded by rank inside). Steps are
    synchronous; a rank whose Poisson batch is empty still takes part in the all-reduce.

    Args:
        model: module to train, identical architecture on every rank.
        dataset: map-style dataset of tensor tuples.
        forward: ``forward(model, batch) -> (logits, targets)``; ``batch`` is already on the device.
        config: the run's config.
        context: from :func:`distributed_context`.
        criterion: loss with ``reduction="mean"``; defaults to cross-entropy.
        collate_fn: optional collate function.
        warmup_steps: steps left out of the timing (they are still trained and accounted).

    Returns:
        The trained module (unwrapped from Opacus and DPDDP) and the run's summary.

    Raises:
        ValueError: the dataset or model cannot be trained as configured.
    """
    if context.initialized and context.world_size != torch.distributed.get_world_size():
        raise ValueError("context does not match the initialised process group")
    torch.manual_seed(config.seed)
    private = make_private_distributed(
        model=model, dataset=dataset, config=config, context=context, criterion=criterion, collate_fn=collate_fn
    )
    steps = config.steps or max(1, round(1 / private.sample_rate))
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be in [0, steps={steps})")
    private.model.train()
    batches = _batches(private.data_loader)
    losses: list[torch.Tensor] = []
    timed_samples = torch.zeros((), dtype=torch.int64, device=context.device)
    started = time.perf_counter()
    for step in range(steps):
        if step == warmup_steps:
            _synchronize(context)
            started = time.perf_counter()
        batch = [t.to(context.device, non_blocking=True) for t in next(batches)]
        private.optimizer.zero_grad(set_to_none=True)
        logits, targets = forward(private.model, batch)
        loss = compute_loss(private, logits, targets)
        loss.backward()
        private.optimizer.step()
        if step >= warmup_steps:
            timed_samples += batch[0].shape[0]
        losses.append(loss.detach().float().reshape(()))
    _synchronize(context)
    seconds = time.perf_counter() - started
    loss_tensor = torch.stack(losses) if losses else torch.zeros(0, device=context.device)
    # An empty local batch gives a NaN mean loss; count it as missing rather than poisoning the average.
    present = (~torch.isnan(loss_tensor)).float()
    loss_tensor = torch.nan_to_num(loss_tensor, nan=0.0)
    if context.initialized:
        for tensor in (timed_samples, loss_tensor, present):
            torch.distributed.all_reduce(tensor)
    # NaN marks a step where no rank drew an example (possible with small datasets).
    mean_losses = torch.where(present > 0, loss_tensor / present.clamp(min=1), float("nan")).tolist()
    samples = int(timed_samples.item())
    epsilon = private.privacy_engine.get_epsilon(config.delta) if config.noise_multiplier > 0 else math.inf
    trained = private.model.to_standard_module()  # drops Opacus' hooks and per-sample attributes
    trained = trained.module if context.initialized else trained
    result = DistributedTrainResult(
        rank=context.rank, world_size=context.world_size, steps=steps, timed_steps=steps - warmup_steps,
        samples=samples, seconds=seconds, samples_per_s=samples / seconds if seconds > 0 else 0.0,
        sample_rate=private.sample_rate, noise_multiplier=float(config.noise_multiplier),
        max_grad_norm=float(config.max_grad_norm), epsilon=float(epsilon), delta=config.delta,
        accountant=config.accountant, grad_sample_mode=config.grad_sample_mode, losses=tuple(mean_losses),
    )
    return trained, result
