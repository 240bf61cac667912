"""Checkpoints of a run: every RNG state, model, optimizer, scheduler and accountant, so a resumed run ends
with the weights of an uninterrupted one; a fingerprint so a checkpoint resumes only its own run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.train.batches import load_examples
from pipelines.train.session import Session
from pipelines.train.spec import TrainError, TrainSpec

CHECKPOINT = "last.pt"
BEST = "best.pt"


def _rng_state(session: Session) -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                       float(np_state[4])],
             "sampler": session.sampler_generator.get_state(), "noise": session.noise_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(session: Session, state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    bit_generator, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((bit_generator, keys.numpy(), pos, has_gauss, cached))
    # A torchrun job keeps every rank's sampler (each draws its own inclusion masks); one process keeps its own.
    samplers = state.get("samplers")
    sampler = samplers[session.rank] if samplers and session.world_size > 1 else state["sampler"]
    session.sampler_generator.set_state(sampler.cpu())
    session.noise_generator.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def spec_fingerprint(spec: TrainSpec) -> str:
    """A digest of what determines a run's trajectory (not where it writes): a checkpoint resumes only the same run."""
    values = spec.to_dict()
    for key in ("out_dir", "checkpoint_dir", "log_every", "num_threads", "train_path", "eval_path"):
        values.pop(key)
    if values["sharding"] == "none":
        values.pop("sharding")  # the key came later: checkpoints written before it still resume
    values["train_examples"], values["eval_examples"] = load_examples(spec)
    values["model"] = _folder_digest(Path(spec.model_dir))
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _synchronize(session: Session) -> None:
    """Wait for every rank of a torchrun job (a no-op in one process)."""
    if session.world_size > 1:
        import torch

        torch.distributed.barrier()


def save_checkpoint(session: Session, folder: Path, fingerprint: str) -> None:
    """Write ``last.pt`` atomically (rank 0 of a torchrun job, after gathering every rank's sampler state)."""
    rng = _rng_state(session)
    model, optimizer = session.model_state(), session.optimizer_state()  # sharded: collectives on every rank
    if session.world_size > 1:
        import torch

        samplers: list[Any] = [None] * session.world_size
        torch.distributed.all_gather_object(samplers, session.sampler_generator.get_state())
        rng["samplers"] = samplers
        if not session.is_main:
            _synchronize(session)  # the main rank writes; every rank resumes from its file
            return
    atomic_save({"fingerprint": fingerprint, "epoch": session.epoch, "step": session.step,
                 "model": model, "optimizer": optimizer,
                 "scheduler": session.scheduler.state_dict(), "accountant": session.engine.accountant.state_dict(),
                 "rng": rng, "history": json.dumps(session.history),
                 "best": json.dumps(session.best)}, folder / CHECKPOINT)
    _synchronize(session)


def resume(session: Session, folder: Path, fingerprint: str, log: Callable[[str], None]) -> bool:
    import torch

    path = folder / CHECKPOINT
    if not path.is_file():
        return False
    # On CPU: RNG states must be CPU byte tensors (numpy's keys are converted with ``.numpy()``, and
    # ``Generator.set_state`` takes a CPU tensor even for a CUDA generator); weights and optimizer state are moved
    # to the module's device by ``load_state_dict``.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise TrainError(f"{path} was written by a different run (spec, data or start model differ): "
                         "delete the checkpoint folder or use another checkpoint_dir")
    session.load_model_state(state["model"])
    session.load_optimizer_state(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    session.engine.accountant.load_state_dict(state["accountant"])
    session.epoch, session.step = int(state["epoch"]), int(state["step"])
    session.history = json.loads(state["history"])
    session.best = json.loads(state["best"])
    _set_rng_state(session, state["rng"])
    log(f"[train] resumed from {path}: epoch={session.epoch} step={session.step}")
    return True


def clear_checkpoints(spec: TrainSpec) -> None:
    """Delete a run's checkpoints (after its output is uploaded), so a rerun starts over."""
    shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
