"""DP training with Opacus: ``train(spec) -> TrainResult``, resumable bit for bit after a kill.

One run: load the start model (:func:`pipelines.modeling.load_model`), optionally wrap it with LoRA,
make it private (``PrivacyEngine.make_private`` with the noise multiplier the privacy stage calibrated,
or ``make_private_with_epsilon`` when only a target epsilon is given), train with Poisson sampling and a
cosine (or linear) decay to ``min_learning_rate``, evaluate and checkpoint every epoch, keep the best
epoch by the task's metric and write it to ``out_dir`` as a model folder plus ``history.json``.

``grad_sample_mode="bk"`` swaps only the clipping: :class:`pipelines.train.fastclip.BookKeepingClipper`
(one forward, one backward) clips and noises instead of Opacus' ``DPOptimizer``, while the rest is what
hooks mode does: the same ``DPDataLoader`` over the same seeded generator (identical batches), the same
noise generator, optimizer and schedule, and the same Opacus accountant, stepped with
``(noise_multiplier, sample_rate)`` once per step exactly as Opacus' optimizer hook does, so the
reported epsilon is the one hooks mode reports for the same steps.

The per-sample weighted loss stays DP-correct: every sample's loss is multiplied by its weight
*before* Opacus computes and clips per-sample gradients, and the batch loss is their mean (the
reduction Opacus is told), so a weight changes a sample's direction and pre-clip size, never the
bound ``max_grad_norm`` on its contribution.

Resume: ``checkpoint_dir/last.pt`` holds the model, optimizer, scheduler, accountant history, every
RNG state (Python, numpy, torch CPU/CUDA, the Poisson sampler's generator, the noise generator, which
book-keeping clipping draws from too), the epoch/step counters, the best epoch and the history. ``fit``
with the same spec continues from it and ends with the same weights as an uninterrupted run
(``secure_mode`` excepted: its CSPRNG has no state).

More than one process: :func:`train` reads the world size torchrun sets (``WORLD_SIZE``) and runs the same
:func:`fit` on every rank (Opacus' DPDDP and distributed optimizer; each rank Poisson-samples its shard at the
single-process rate, noise is added once on rank 0, so the accountant's epsilon is the single-process one).
Rank 0 writes checkpoints (with every rank's sampler state) and the output. With ``sharding=fsdp`` the ranks hold
FSDP2 shards of the model instead of full copies (Opacus' ``ghost_fsdp`` clipping; every rank noises its own shard
from the same seeded generator); checkpoints and the output hold the full weights, gathered on rank 0. A resumed job restores the
privacy-relevant state exactly (weights, optimizer, accountant, every rank's sampler, rank 0's noise); other
ranks' dropout streams restart from rank 0's, so it is not bit for bit.

The pieces: ``spec.py`` (what to run), ``session.py`` (the model made private), ``batches.py`` (tensors,
forward, loss), ``evaluate.py`` (metrics), ``checkpoint.py`` (save, resume).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.modeling import save_model
from pipelines.train.checkpoint import BEST, CHECKPOINT, atomic_save, resume, save_checkpoint, spec_fingerprint
from pipelines.train.evaluate import is_better
from pipelines.train.session import Session, prepare, stderr_log
from pipelines.train.spec import METRICS, TrainError, TrainResult, TrainSpec

HISTORY = "history.json"


def fit(spec: TrainSpec, *, log: Callable[[str], None] | None = None, context: Any = None) -> TrainResult:
    """Train under DP, evaluating and checkpointing every epoch; resume from ``checkpoint_dir`` if it holds one.

    The one training loop, for one process and for every rank of a torchrun job (:func:`train` decides).

    Args:
        spec: the run's spec.
        log: progress lines (step, epoch, learning rate, epsilon so far; never a training loss) go here; default
            stderr (rank 0 only in a job).
        context: the :class:`pipelines.train.ddp.DistributedContext` of a torchrun job, else None.

    Returns:
        The TrainResult; ``out_dir`` holds the best epoch's model folder and ``history.json``.

    Raises:
        TrainError / DataError: the spec, the data or the start model cannot be used (the message says why).
    """
    import torch

    log = log or stderr_log
    if context is not None and context.rank != 0:
        log = _quiet  # one progress log per job
    checkpoints = Path(spec.checkpoint_dir)
    checkpoints.mkdir(parents=True, exist_ok=True)
    session = prepare(spec, log=log, context=context)
    fingerprint = spec_fingerprint(spec)
    resume(session, checkpoints, fingerprint, log)
    metric, higher = METRICS[session.loaded.task]
    started = time.perf_counter()
    samples, train_seconds = 0, 0.0  # this attempt's training steps (not eval or checkpoints): samples/s
    while session.epoch < spec.epochs:
        epoch = session.epoch + 1
        epoch_started = time.perf_counter()
        for batch in session.loader:
            samples += _batch_size(batch)
            # The batch loss is a statistic of private records computed without noise: it is neither logged nor
            # recorded (the logs and the history are published outside the DP guarantee).
            session.train_step(batch)
            if session.step % spec.log_every == 0:
                log(f"[train] epoch={epoch} step={session.step} "
                    f"lr={session.scheduler.get_last_lr()[0]:.3g} eps={session.epsilon():.4f}")
        train_seconds += time.perf_counter() - epoch_started
        metrics = session.evaluate()
        session.epoch = epoch
        entry = {"epoch": epoch, "step": session.step, "lr": session.scheduler.get_last_lr()[0],
                 "epsilon": round(session.epsilon(), 6), **metrics}
        session.history.append(entry)
        if is_better(metric, higher, metrics[metric], session.best):
            session.best = {"epoch": epoch, "metric": metric, "value": metrics[metric], "metrics": metrics}
            state = session.model_state()  # sharded: every rank takes part in gathering it
            if session.is_main:  # every rank holds the same weights; the next checkpoint waits for this file
                atomic_save(state, checkpoints / BEST)
            del state
        # Checkpoint after eval so the saved RNG states are the ones the next epoch starts from.
        save_checkpoint(session, checkpoints, fingerprint)
        log(f"[train] epoch={epoch} done step={session.step} {metric}={metrics[metric]} eps={entry['epsilon']:.4f} "
            f"best_epoch={session.best['epoch']} checkpoint={checkpoints / CHECKPOINT}")
    samples_per_s = _throughput(session, samples, train_seconds)
    if session.clipper is not None:
        session.clipper.remove()  # its hooks stay on the module otherwise, and the output is saved from it
    session.load_model_state(torch.load(checkpoints / BEST, map_location="cpu" if session.sharded else session.device,
                                        weights_only=True))
    result = TrainResult(out_dir=str(spec.out_dir), metrics={**session.best["metrics"], "metric": metric},
                         history=session.history, steps=session.step, sample_rate=session.sample_rate,
                         noise_multiplier=session.noise_multiplier, epsilon=session.epsilon(), delta=spec.delta,
                         best_epoch=int(session.best["epoch"]), accountant=spec.accountant,
                         max_grad_norm=spec.max_grad_norm, world_size=session.world_size,
                         samples_per_s=samples_per_s)
    # Sharded: the best weights are gathered on rank 0 into an unsharded copy of the model, which is saved.
    full = session.model_state() if session.sharded else None
    if session.is_main:
        _write_output(session, result, None if full is None else session.unsharded_copy(full))
    log(f"[train] done steps={result.steps} eps={result.epsilon:.4f} best_epoch={result.best_epoch} "
        f"{metric}={result.metrics[metric]} out={spec.out_dir} ({time.perf_counter() - started:.1f}s this process)")
    return result


def _write_output(session: Session, result: TrainResult, module: Any = None) -> None:
    module = session.module if module is None else module
    if session.spec.method == "lora":
        # Serving loads plain model folders: fold the adapters into the weights.
        module = module.merge_and_unload()
    module = module.to("cpu")
    out = Path(session.spec.out_dir)
    save_model(session.loaded, module, out, extra={"trained": {
        "best_epoch": result.best_epoch, "steps": result.steps, "method": session.spec.method,
        "dp": {"epsilon": result.epsilon, "delta": result.delta, "noise_multiplier": result.noise_multiplier,
               "sample_rate": result.sample_rate, "steps": result.steps, "accountant": result.accountant,
               "max_grad_norm": result.max_grad_norm}}})
    (out / HISTORY).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _batch_size(batch: Any) -> int:
    """Examples in a loader batch (Opacus yields ``[]`` for an empty Poisson draw before the first non-empty one)."""
    return int(batch[0].shape[0]) if isinstance(batch, (list, tuple)) and batch else 0


def _throughput(session: Session, samples: int, seconds: float) -> float:
    """Examples per training second of this attempt, all ranks together (the slowest rank's time: steps are
    synchronous)."""
    if session.world_size > 1:
        import torch

        totals = torch.tensor([float(samples)], dtype=torch.float64, device=session.device)
        slowest = torch.tensor([seconds], dtype=torch.float64, device=session.device)
        torch.distributed.all_reduce(totals)
        torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
        samples, seconds = int(totals.item()), float(slowest.item())
    return round(samples / seconds, 3) if samples and seconds > 0 else 0.0


def _quiet(_line: str) -> None:
    """The log of ranks other than 0 in a torchrun job."""


def world_size() -> int:
    """How many processes train this run: ``WORLD_SIZE`` as torchrun sets it, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise TrainError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: expected an integer (torchrun sets it)") from None


def train(spec: TrainSpec, *, log: Callable[[str], None] | None = None) -> TrainResult:
    """The one entry point of a training run: one process, or every rank of a torchrun job.

    The world size decides: 1 runs :func:`fit` here; more (``WORLD_SIZE`` from torchrun) runs the same loop on
    every rank with Opacus' distributed DP (:mod:`pipelines.train.ddp`), the main rank writing checkpoints and
    the output.
    """
    if world_size() == 1:
        return fit(spec, log=log)
    from pipelines.train.ddp import distributed_context  # torch at import: only for torchrun jobs

    with distributed_context(device=None if spec.device == "auto" else spec.device) as context:
        return fit(spec, log=log, context=context)
