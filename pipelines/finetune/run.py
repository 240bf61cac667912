"""Step 2 of a run: train the planned run (resuming a crashed attempt) and push its artifact.

The noise of a run is seeded from the OS CSPRNG (``secrets``) unless ``training.seed`` pins it (tests); the seed
lives only in the run's checkpoint folder on the training host, next to the weights, so a resumed attempt replays
exactly the noise of the steps it repeats and releases nothing new.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactRef, ArtifactsConfig, build_manifest, claim_version, current_production, fetch_cached, load_ref,
    production_ref, push_artifact, write_model_card,
)
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import TrainedRun, TrainPlan
from pipelines.finetune.inputs import code_version, pinned_data, project_path, slot_configs
from pipelines.forecast import ModelSlot
from pipelines.privacy import complete_run, spend_history
from pipelines.storage import ObjectStore
from pipelines.train.config import TrainingConfig, spec_from_config
from pipelines.train.data import read_lexicon, with_weights, write_jsonl
from pipelines.train.evaluate import evaluate_model
from pipelines.train.trainer import TrainResult, train

log = logging.getLogger("pipelines.finetune")


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


def _seed(folder: Path, training: TrainingConfig) -> int:
    """The run's seed: pinned by config, else drawn once from the OS CSPRNG and kept beside the checkpoints."""
    if training.seed:
        return int(training.seed)
    path = folder / "seed"
    if path.exists():
        return int(path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    seed = secrets.randbits(62)
    path.write_text(str(seed))
    return seed


def _start_ref(store: ObjectStore, plan: TrainPlan, artifacts: ArtifactsConfig) -> ArtifactRef:
    """The start model the plan pinned (production or base artifact of the slot)."""
    return load_ref(store, plan.domain, plan.start.artifact_id, prefix=artifacts.prefix, base=plan.start.is_base)


def _fit(plan: TrainPlan, *, slot: ModelSlot, training: TrainingConfig, start_dir: Path, train_examples: list[dict],
         held: list[dict], log_every: int) -> tuple[TrainResult, Path]:
    """Write the run's examples beside its checkpoints and train; returns the result and the model folder."""
    folder = run_folder(training, plan.run_id)
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = write_jsonl(work / "train.jsonl", train_examples), write_jsonl(work / "eval.jsonl", held)
    out_dir = work / "model"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    spec = spec_from_config(training, model_dir=str(start_dir), out_dir=str(out_dir),
                            checkpoint_dir=str(folder / "checkpoints"), train_path=str(train_path),
                            eval_path=str(eval_path), noise_multiplier=plan.noise_multiplier, delta=plan.delta,
                            kind=plan.kind, accountant=plan.accountant, steps=plan.steps,
                            overrides={"seed": _seed(folder, training), "log_every": log_every,
                                       "max_grad_norm": plan.max_grad_norm,
                                       # No text to weigh, no LoRA targets in the forecaster.
                                       **({"weight_terms": (), "method": "full"} if slot.is_forecast else {})})
    return train(spec), out_dir


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
    slot, training, privacy, artifacts, _max_drop = slot_configs(config, name)
    marker = run_marker(artifacts, name, run_id)
    if store.exists(marker):  # pushed by an earlier attempt: the artifact is immutable, nothing to redo
        return TrainedRun.from_dict(json.loads(store.get(marker)))

    # The pinned partition versions, read again (large data moves through the store, not XCom).
    train_examples, held = pinned_data(config=config, store=store, slot=slot, training=training,
                                       partitions=plan.partitions)
    if training.weight_terms_file and not slot.is_forecast:
        terms = read_lexicon(project_path(training.weight_terms_file))
        train_examples = with_weights(train_examples, terms=terms, factor=training.weight_factor)
    start = _start_ref(store, plan, artifacts)
    start_dir = fetch_cached(store, start, cache_dir=artifacts.cache_path)
    result, out_dir = _fit(plan, slot=slot, training=training, start_dir=start_dir, train_examples=train_examples,
                           held=held, log_every=log_every)
    complete_run(config=privacy, store=store, domain=name, run_id=run_id, steps=result.steps, epsilon=result.epsilon)

    # The gate's fair baseline: the current production model (else the start model) on this run's held-out split.
    # A monthly run starts from the base model, so production is fetched and evaluated here too.
    judged = production_ref(store, name, prefix=artifacts.prefix) or start
    judged_dir = start_dir if judged.artifact_id == start.artifact_id else fetch_cached(
        store, judged, cache_dir=artifacts.cache_path)
    baseline = evaluate_model(judged_dir, held, max_length=training.max_length, device=training.device)
    baseline["artifact_id"] = judged.artifact_id
    split = (f"tail{training.forecast_eval_tail}/window{training.forecast_window}" if slot.is_forecast
             else f"hash%100<{training.eval_percent}")
    metrics = {**result.metrics, "split": split, "eval_examples": len(held), "train_examples": len(train_examples),
               "baseline": baseline}

    production = current_production(store, name, prefix=artifacts.prefix)
    parent_version = production.version if (kind == "weekly" and production) else None
    version = claim_version(store, name, kind=kind, parent_version=parent_version, prefix=artifacts.prefix,
                            run_id=run_id)
    dp = {"epsilon": plan.epsilon, "epsilon_training": round(result.epsilon, 6), "delta": plan.delta,
          "noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate, "steps": result.steps,
          "accountant": plan.accountant, "max_grad_norm": plan.max_grad_norm, "ledger_key": plan.ledger_key or None,
          "unit": "series" if slot.is_forecast else "record", "method": training.grad_sample_mode}
    data = [{**p.to_dict(), "domain": name} for p in plan.partitions]
    manifest = build_manifest(out_dir, domain=name, task=plan.task, kind=kind, version=version,
                              parent=start.artifact_id, data=data, code_version=code_version(), dp=dp,
                              metrics=metrics, created_by=plan.requested_by or "pipelines.finetune")
    points = [(when, eps) for when, _run, eps in spend_history(config=privacy, store=store, domain=name)]
    manifest = write_model_card(out_dir, manifest, result.history, epsilon_points=points,
                                epsilon_budget=privacy.epsilon)
    ref = push_artifact(store, out_dir, domain=name, prefix=artifacts.prefix)
    trained = TrainedRun(domain=name, kind=kind, run_id=run_id, task=plan.task, artifact_id=ref.artifact_id,
                         version=ref.version, root=ref.root,
                         metrics={k: v for k, v in metrics.items() if k != "baseline"}, baseline=baseline,
                         epsilon=plan.epsilon, steps=result.steps)
    store.put(marker, json.dumps(trained.to_dict(), sort_keys=True).encode(), if_none_match=True)
    log.info("trained %s -> %s v%s %s", run_id, ref.artifact_id, ref.version, json.dumps(dict(trained.metrics)))
    return trained


