"""Making a run private: Opacus in a torchrun job (DPDDP, or FSDP2 with ghost clipping) and book-keeping clipping.

What :func:`pipelines.train.session.prepare` hands each path and gets back (:class:`Private`); the
single-process Opacus path stays in ``session.prepare``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from pipelines.train.spec import TrainError, TrainSpec


@dataclass(frozen=True)
class Private:
    """What making a run private produced (Opacus' ``make_private`` or :func:`make_private_bk`)."""

    model: Any
    optimizer: Any
    scheduled: Any  # the torch optimizer the LR schedule drives
    criterion: Any
    loader: Any
    engine: Any
    sample_rate: float
    noise_multiplier: float
    clipper: Any = None


def make_private_bk(spec: TrainSpec, *, model, optimizer, criterion, loader, noise_generator) -> Private:
    """Book-keeping clipping with everything else as ``PrivacyEngine.make_private`` sets it up.

    The sample rate, expected batch size, Poisson loader and (for ``target_epsilon``) the calibrated
    noise multiplier are computed exactly as Opacus 1.6 computes them, so a bk run samples the same
    batches and spends the same epsilon as a hooks run of the same spec.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import DPDataLoader

    from pipelines.train.fastclip import BookKeepingClipper, UnsupportedLayerError

    sample_rate = 1.0 / len(loader)
    expected_batch_size = int(len(loader.dataset) * sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the secure_mode=False warning: bk rejects secure_mode in the spec
        engine = PrivacyEngine(accountant=spec.accountant, secure_mode=False)
    if spec.noise_multiplier is not None:
        noise_multiplier = float(spec.noise_multiplier)
    else:
        noise_multiplier = float(get_noise_multiplier(target_epsilon=spec.target_epsilon, target_delta=spec.delta,
                                                      sample_rate=sample_rate, epochs=spec.epochs,
                                                      accountant=engine.accountant.mechanism()))
    # Opacus' make_private passes generator=None (no secure_mode), so the Poisson sampler draws from the
    # original loader's generator: the same seeded sampler_generator as hooks mode.
    dp_loader = DPDataLoader.from_data_loader(loader, distributed=False) if spec.poisson_sampling else loader
    try:
        clipper = BookKeepingClipper(model, max_grad_norm=spec.max_grad_norm, noise_multiplier=noise_multiplier,
                                     expected_batch_size=expected_batch_size, loss_reduction="mean",
                                     generator=noise_generator)
    except UnsupportedLayerError as exc:
        raise TrainError(f"grad_sample_mode=bk cannot train this model: {exc}; or use grad_sample_mode hooks") from None
    return Private(model=model, optimizer=optimizer, scheduled=optimizer, criterion=criterion, loader=dp_loader,
                    engine=engine, sample_rate=sample_rate, noise_multiplier=noise_multiplier, clipper=clipper)


def _fsdp2_wrap(model, *, device_type: str, world_size: int):
    """Opacus' ``FSDP2Wrapper`` on an explicit device mesh of this job's device type.

    Opacus' wrapper calls ``fully_shard`` without a mesh, and torch's default mesh takes the accelerator whenever one
    is present: a CPU (gloo) job on a GPU host then had its shards moved to ``cuda:0``. Same wrapping rule as Opacus:
    every layer it clips and every layer without trainable parameters, then the root.
    """
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping_fsdp import (
        GradSampleModuleFastGradientClippingFSDP,
    )
    from opacus.utils.fsdp_utils import iterate_submodules
    from opacus.utils.module_utils import has_trainable_params
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world_size,))
    samplers = set(GradSampleModuleFastGradientClippingFSDP.GRAD_SAMPLERS) | set(
        GradSampleModuleFastGradientClippingFSDP.NORM_SAMPLERS)
    for module in iterate_submodules(model):
        if type(module) in samplers or not has_trainable_params(module):
            fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def make_private_distributed(spec: TrainSpec, *, model, optimizer, criterion, train_set, context,
                              noise_generator) -> Private:
    """Opacus' distributed DP-SGD for one rank of a torchrun job, at the single-process sample rate.

    The expected global batch is ``spec.batch_size`` over all ranks; ``q = 1 / ceil(N / batch_size)`` as in one
    process, so the accountant spends the same epsilon for the same steps.
    """
    import torch
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    from pipelines.train.ddp import distributed_poisson_loader  # torch at import: only for torchrun jobs

    if spec.grad_sample_mode == "bk":
        raise TrainError("grad_sample_mode=bk trains in one process; use hooks or ghost with more than one GPU")
    if spec.noise_multiplier is None:
        raise TrainError("a distributed run needs noise_multiplier (the privacy stage calibrates it); "
                         "target_epsilon is for single-process runs")
    batches = -(-len(train_set) // min(spec.batch_size, len(train_set)))
    sampler_generator = torch.Generator().manual_seed(spec.seed + 1009 * context.rank)
    loader = distributed_poisson_loader(train_set, sample_rate=1.0 / batches, steps=batches, shuffle_seed=spec.seed,
                                        generator=sampler_generator, collate_fn=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # secure_mode=False and functorch fallback warnings, as in one process
        try:
            engine = PrivacyEngine(accountant=spec.accountant, secure_mode=spec.secure_mode)
        except ImportError as exc:
            raise TrainError(f"secure_mode needs torchcsprng ({exc}); install it on the training host or set "
                             "secure_mode false for experiments") from None
        if spec.sharding == "fsdp":
            # FSDP2 shards every layer Opacus clips (and the frozen ones) and the root; the parameters become
            # shards in place, so the optimizer is made over them afterwards. Every rank noises its own shard from
            # the same seeded generator (one draw per coordinate), as Opacus' FSDP optimizer expects.
            wrapped, mode = _fsdp2_wrap(model, device_type=context.device.type, world_size=context.world_size), \
                "ghost_fsdp"
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate,
                                          weight_decay=spec.weight_decay)
            optimizer.register_step_pre_hook(_grads_placed_like_params)
        else:
            wrapped, mode = DPDDP(model), spec.grad_sample_mode
        made = engine.make_private(module=wrapped, optimizer=optimizer, criterion=criterion, data_loader=loader,
                                   noise_multiplier=spec.noise_multiplier, max_grad_norm=spec.max_grad_norm,
                                   poisson_sampling=False,  # the loader above is Poisson already, per rank
                                   grad_sample_mode=mode, loss_reduction="mean",
                                   noise_generator=None if spec.secure_mode else noise_generator)
    if spec.grad_sample_mode == "ghost":
        dp_model, dp_optimizer, criterion, dp_loader = made
    else:
        dp_model, dp_optimizer, dp_loader = made
    dp_model.forbid_grad_accumulation()  # what make_private does for its own Poisson loaders
    return Private(model=dp_model, optimizer=dp_optimizer, scheduled=dp_optimizer.original_optimizer,
                    criterion=criterion, loader=dp_loader, engine=engine, sample_rate=1.0 / batches,
                    noise_multiplier=float(dp_optimizer.noise_multiplier))


def _grads_placed_like_params(optimizer, _args, _kwargs) -> None:
    """Opacus' FSDP optimizer leaves a noised gradient replicated where FSDP2 left it sharded like its parameter
    (uneven shards); AdamW's in-place state updates need the two placed alike (SGD does not notice)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            grad = p.grad
            if grad is not None and hasattr(grad, "placements") and grad.placements != p.placements:
                p.grad = grad.redistribute(p.device_mesh, p.placements)
