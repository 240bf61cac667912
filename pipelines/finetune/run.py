"""Step 2 of a run: train the planned run (resuming a crashed attempt) and push its artifact.

The noise of a run is seeded from the OS CSPRNG (``secrets``) unless ``training.seed`` pins it (tests); the seed
lives only in the run's folder on the training host (mode 0600), next to the checkpoints, so a resumed attempt
replays exactly the noise of the steps it repeats and releases nothing new. The folder (seed, plaintext examples,
checkpoints) is deleted once the artifact is pushed: only a retry that may resume needs it.

What the artifact publishes is computed on the slot's public evaluation set (:mod:`pipelines.finetune.evaluation`),
never on private records; the exact lineage (partition digests, record counts) goes to the private store only
(``privacy/lineage/<slot>/<run>.json``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactRef, build_manifest, claim_version, current_production, fetch_cached, load_ref,
    production_ref, push_artifact, write_model_card,
)
from pipelines.code.evaluate import code_metrics
from pipelines.config import ArtifactsConfig, PipelineConfig
from pipelines.finetune.evaluation import EvaluationData, evaluation_data
from pipelines.finetune.handover import RunRefused, TrainedRun, TrainPlan
from pipelines.finetune.inputs import code_version, pinned_data, project_path, slot_configs
from pipelines.finetune.lineage import epsilon_points, record_facts
from pipelines.forecast import ModelSlot
from pipelines.privacy import DPTrainingSettings, complete_run, dp_training_settings, planned_records
from pipelines.storage import ObjectStore
from pipelines.train.config import TrainingConfig, spec_from_config
from pipelines.train.data import read_lexicon, with_weights, write_jsonl
from pipelines.train.evaluate import evaluate_model, trivial_baseline
from pipelines.train.spec import HISTORY, TrainError, TrainSpec
from pipelines.train.trainer import TrainResult, train, world_size

log = logging.getLogger("pipelines.finetune")
LINEAGE_PREFIX = "privacy/lineage"


def checkpoint_root(training: TrainingConfig) -> Path:
    """Where runs checkpoint (local disk of the training host): ``training.checkpoint_root``."""
    return project_path(training.checkpoint_root)


def run_folder(training: TrainingConfig, run_id: str) -> Path:
    """The run's folder on the training host: ``<checkpoint_root>/<run id>`` (seed, checkpoints, work files)."""
    return checkpoint_root(training) / safe_name(run_id)


def safe_name(run_id: str) -> str:
    """A run id usable as a file or key name."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in run_id)


def run_marker(artifacts: ArtifactsConfig, slot_name: str, run_id: str) -> str:
    """The key of a finished run's record: written last, so a retry of a finished run changes nothing."""
    return f"{artifacts.prefix}/{slot_name}/runs/{safe_name(run_id)}.json"


def lineage_key(slot_name: str, run_id: str) -> str:
    """The private-store key of a run's exact lineage (partition digests and record counts)."""
    return f"{LINEAGE_PREFIX}/{slot_name}/{safe_name(run_id)}.json"


def _seed(folder: Path, training: TrainingConfig) -> int:
    """The run's seed: pinned by config, else drawn once from the OS CSPRNG and kept beside the checkpoints.

    The file is a secret (who knows it can subtract the noise): created 0600, never readable by others.
    """
    if training.seed:
        return int(training.seed)
    path = folder / "seed"
    if path.exists():
        return int(path.read_text())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = secrets.randbits(62)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(seed))
    return seed


def clear_run_folder(training: TrainingConfig, run_id: str) -> None:
    """Delete a run's folder on the training host (seed, plaintext examples, checkpoints, output).

    Called once the artifact is pushed and the run marker written: no retry can resume it any more.
    """
    shutil.rmtree(run_folder(training, run_id), ignore_errors=True)


def _start_ref(store: ObjectStore, plan: TrainPlan, artifacts: ArtifactsConfig) -> ArtifactRef:
    """The start model the plan pinned (production or base artifact of the slot)."""
    return load_ref(store, plan.domain, plan.start.artifact_id, prefix=artifacts.prefix, base=plan.start.is_base)


def _fit(plan: TrainPlan, *, slot: ModelSlot, training: TrainingConfig, settings: DPTrainingSettings,
         start_dir: Path, train_examples: list[dict], evaluation: EvaluationData,
         log_every: int) -> tuple[TrainResult, Path]:
    """Write the run's examples beside its checkpoints and train; returns the result and the model folder.

    The trainer evaluates (and keeps its best epoch) on the public evaluation set; secure mode, sampling and the
    clipping bound come from the privacy config (``dp_training_settings``), the one source of truth.
    """
    folder = run_folder(training, plan.run_id)
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    held = list(evaluation.examples)
    train_path, eval_path = write_jsonl(work / "train.jsonl", train_examples), write_jsonl(work / "eval.jsonl", held)
    out_dir = work / "model"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    spec = spec_from_config(training, model_dir=str(start_dir), out_dir=str(out_dir),
                            checkpoint_dir=str(folder / "checkpoints"), train_path=str(train_path),
                            eval_path=str(eval_path), noise_multiplier=plan.noise_multiplier, delta=plan.delta,
                            kind=plan.kind, accountant=plan.accountant, steps=plan.steps,
                            overrides={"seed": _seed(folder, training), "log_every": log_every,
                                       "max_grad_norm": plan.max_grad_norm, "secure_mode": settings.secure_mode,
                                       "poisson_sampling": settings.poisson_sampling,
                                       # No text to weigh, no LoRA targets in the forecaster.
                                       **({"weight_terms": (), "method": "full"} if slot.is_forecast else {})})
    return launch_training(spec, devices=training.devices, folder=work), out_dir


def torchrun_command(spec_path: Path, *, devices: int) -> list[str]:
    """The command of a training job of ``devices`` ranks on this host: ``torchrun --standalone
    --nproc_per_node=N -m pipelines.train --spec FILE`` (through this interpreter, so the job sees this venv)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
            "-m", "pipelines.train", "--spec", str(spec_path)]


def launch_training(spec: TrainSpec, *, devices: int, folder: Path) -> TrainResult:
    """Train ``spec`` on ``devices`` processes of this host: the one launch for 1 and N GPUs.

    One device trains in this process. More start a torchrun job whose ranks run the same entry point
    (:func:`pipelines.train.trainer.train`: Opacus DPDDP, each rank Poisson-samples its shard at the
    single-process rate, so the accountant's q, sigma, steps and epsilon are those of one process); rank 0
    writes the checkpoints and the output, and this process (never a rank) reads the result back and
    packages, pushes and records the run once. A killed job rerun with the same spec resumes from the last
    epoch checkpoint, as one process does.

    Args:
        spec: the run (its examples as ``train_path`` / ``eval_path`` files, so the spec file stays small).
        devices: ``training.devices``.
        folder: where the spec file of a torchrun job is written (the run's work folder).

    Returns:
        The TrainResult (``world_size`` and ``samples_per_s`` say how it ran).

    Raises:
        TrainError: asked for more GPUs than the host has, started inside a torchrun job, or the job failed.
    """
    if world_size() > 1:
        raise TrainError(f"WORLD_SIZE={os.environ['WORLD_SIZE']}: the finetune run launches its own torchrun job "
                         "(training.devices); start `python -m pipelines train domain` as one process")
    if devices == 1:
        return train(spec)
    import torch

    if spec.device != "cpu" and torch.cuda.is_available() and devices > torch.cuda.device_count():
        raise TrainError(f"training.devices={devices} but this host has {torch.cuda.device_count()} GPU(s): "
                         "lower training.devices (and the task's pool slots with it)")
    if spec.train_examples or spec.eval_examples:
        raise TrainError("a torchrun job reads its examples from train_path / eval_path: write them to files")
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec.to_dict(), sort_keys=True), encoding="utf-8")
    root = str(Path(__file__).resolve().parents[2])  # the ranks import this checkout's pipelines
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    log.info("training on %d processes: %s", devices, " ".join(torchrun_command(spec_path, devices=devices)))
    # Progress and errors go to stderr (the task log); each rank's result JSON on stdout is not needed: rank 0
    # wrote it to the output folder.
    done = subprocess.run(torchrun_command(spec_path, devices=devices), cwd=root, env=env,
                          stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise TrainError(f"the torchrun job of {devices} processes exited with {done.returncode} (the ranks' "
                         "errors are in the log above); a retry resumes from the last epoch checkpoint")
    return TrainResult.from_dict(json.loads((Path(spec.out_dir) / HISTORY).read_text(encoding="utf-8")))


def train_run(*, config: PipelineConfig, store: ObjectStore, plan: TrainPlan | Mapping[str, Any],
              log_every: int = 10) -> TrainedRun:
    """Train the planned run (resuming a crashed attempt) and push its artifact.

    Returns:
        The trained run (artifact, metrics, production's baseline on the same split); a dry-run plan gives a run
        with ``skipped`` set and trains nothing.
    """
    plan = plan if isinstance(plan, TrainPlan) else TrainPlan.from_dict(plan)
    if plan.dry_run:
        return TrainedRun.skipped_plan(plan, "dry run")
    name, kind, run_id = plan.domain, plan.kind, plan.run_id
    slot, training, privacy, artifacts, _max_drop = slot_configs(config=config, name=name)
    marker = run_marker(artifacts, name, run_id)
    if store.exists(marker):  # pushed by an earlier attempt: the artifact is immutable, nothing to redo
        return TrainedRun.from_dict(json.loads(store.get(marker)))

    # DP settings and the evaluation set first: a run that cannot honour them fails before reading private data.
    settings = dp_training_settings(privacy)
    evaluation = evaluation_data(config=config, store=store, slot=slot, training=training)
    # The pinned partition versions, read again (large data moves through the store, not XCom), and of them
    # exactly the records the ledger entry reserved: the run is charged for those and trains on nothing else.
    # The private held-out split is not used: every released number comes from the public evaluation set.
    records = planned_records(config=privacy, store=store, domain=name, run_id=run_id)
    if plan.records is not None and (plan.records.count, plan.records.sha256) != (len(records), records.sha256):
        raise RunRefused(f"{name}: run {run_id}'s ledger entry names other records than its plan; plan a new run")
    train_examples, private_held = pinned_data(config=config, store=store, slot=slot, training=training,
                                               partitions=plan.partitions, records=records)
    if training.weight_terms_file and not slot.is_forecast:
        terms = read_lexicon(project_path(training.weight_terms_file))
        train_examples = with_weights(train_examples, terms=terms, factor=training.weight_factor)
    start = _start_ref(store, plan, artifacts)
    start_dir = fetch_cached(store, start, cache_dir=artifacts.cache_path)
    result, out_dir = _fit(plan, slot=slot, training=training, settings=settings, start_dir=start_dir,
                           train_examples=train_examples, evaluation=evaluation, log_every=log_every)
    complete_run(config=privacy, store=store, domain=name, run_id=run_id, steps=result.steps, epsilon=result.epsilon)

    # The gate's fair baselines on the same evaluation set: the current production model (else the start model),
    # and what a model that learned nothing scores. A monthly run starts from the base model, so production is
    # fetched and evaluated here too.
    held, split = list(evaluation.examples), evaluation.split
    judged = production_ref(store, name, prefix=artifacts.prefix) or start
    judged_dir = start_dir if judged.artifact_id == start.artifact_id else fetch_cached(
        store, judged, cache_dir=artifacts.cache_path)
    baseline = evaluate_model(judged_dir, held, max_length=training.max_length, device=training.device)
    baseline.update(artifact_id=judged.artifact_id, split=split)
    trivial = {**trivial_baseline(out_dir, held, max_length=training.max_length), "split": split}
    # No count or statistic of the private records: the evaluation set is public, so its size may be published.
    metrics = {**result.metrics, "split": split, "evaluation": evaluation.source,
               "evaluation_set": evaluation.where, "eval_examples": len(held), "baseline": baseline,
               "trivial": trivial}
    # A code domain's syntax-valid rates and pass@1 (issue 18): reported in the manifest, never gating.
    metrics.update(code_metrics(config, name, out_dir))

    production = current_production(store, name, prefix=artifacts.prefix)
    parent_version = production.version if (kind == "weekly" and production) else None
    version = claim_version(store, name, kind=kind, parent_version=parent_version, prefix=artifacts.prefix,
                            run_id=run_id)
    dp = {"epsilon": plan.epsilon, "epsilon_training": round(result.epsilon, 6), "delta": plan.delta,
          "noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate, "steps": result.steps,
          "accountant": plan.accountant, "max_grad_norm": plan.max_grad_norm, "ledger_key": plan.ledger_key or None,
          "unit": "series" if slot.is_forecast else "record", "method": training.grad_sample_mode,
          "secure_mode": settings.secure_mode, "poisson_sampling": settings.poisson_sampling,
          "world_size": result.world_size, "samples_per_s": result.samples_per_s}
    data = [{"interval": p.interval, "version": p.version} for p in plan.partitions]
    manifest = build_manifest(out_dir, domain=name, task=plan.task, kind=kind, version=version,
                              parent=start.artifact_id, data=data, code_version=code_version(), dp=dp,
                              metrics=metrics, created_by=plan.requested_by or "pipelines.finetune")
    # The records behind it (subjects, erasures since the model it follows) and each record's ε over time.
    facts = record_facts(config=config, store=store, plan=plan, privacy=privacy, records=records, start=start,
                         previous=production_ref(store, name, prefix=artifacts.prefix), unit=dp["unit"],
                         artifacts_prefix=artifacts.prefix, data_domain=slot.domain)
    manifest = write_model_card(out_dir, {**manifest, "privacy": facts.to_dict()}, result.history,
                                epsilon_points=epsilon_points(privacy=privacy, store=store, domain=name),
                                epsilon_budget=privacy.epsilon)
    ref = push_artifact(store, out_dir, domain=name, prefix=artifacts.prefix)
    store.put(lineage_key(name, run_id), json.dumps({
        "slot": name, "run_id": run_id, "artifact_id": ref.artifact_id, "version": ref.version,
        "partitions": [p.to_dict() for p in plan.partitions], "train_examples": len(train_examples),
        "private_held_out_unused": len(private_held)}, sort_keys=True).encode())
    trained = TrainedRun(domain=name, kind=kind, run_id=run_id, task=plan.task, artifact_id=ref.artifact_id,
                         version=ref.version, root=ref.root,
                         metrics={k: v for k, v in metrics.items() if k != "baseline"}, baseline=baseline,
                         epsilon=plan.epsilon, steps=result.steps)
    store.put(marker, json.dumps(trained.to_dict(), sort_keys=True).encode(), if_none_match=True)
    clear_run_folder(training, run_id)  # pushed and marked: no retry resumes it, so no plaintext or seed stays
    log.info("trained %s -> %s v%s %s", run_id, ref.artifact_id, ref.version, json.dumps(dict(trained.metrics)))
    return trained


