"""Step 1 of a run: which slots have data, and the plan of one run (partitions, start model, noise, budget)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipelines.artifacts import production_ref
from pipelines.config import ConfigError, PipelineConfig
from pipelines.finetune.base import base_ref
from pipelines.finetune.handover import PlannedRecords, RunRefused, RunRequest, StartModel, TrainPlan
from pipelines.finetune.inputs import curated_partitions, run_data, slot_configs
from pipelines.forecast import forecast_slots, model_slot
from pipelines.privacy import BudgetExceeded, check_delta, entry_key, reserve_budget
from pipelines.privacy import plan_run as plan_privacy
from pipelines.storage import ObjectStore
from pipelines.train.recipes import budget_warnings

log = logging.getLogger("pipelines.finetune")
_MIN_TRAIN = 2  # fewer training examples than this: nothing to train on


def domains_to_train(*, config: PipelineConfig, store: ObjectStore, kind: str, only: str | None = None) -> list[str]:
    """Model slots with something to train: weekly, training records no weekly run read; monthly, any data.

    Weekly work is decided per record, as ``plan_run`` will select it (``untrained_records``): a partition
    re-published with a record moved in from another week has no work unless some record in it is new.
    Forecaster slots (``finance_forecast``) follow the domains; ``only`` names one domain or slot.
    """
    names = ([model_slot(config=config, name=only).name] if only
             else sorted(config.domains) + forecast_slots(config=config))
    out = []
    for name in names:
        if kind == "weekly":
            slot, training, privacy, _artifacts, _max_drop = slot_configs(config=config, name=name)
            data = run_data(config=config, store=store, slot=slot, training=training, privacy=privacy,
                            kind=kind, run_id="")
            has_work = len(data.train) >= _MIN_TRAIN
        else:
            has_work = bool(curated_partitions(config=config, store=store, slot=model_slot(config=config, name=name)))
        if has_work:
            out.append(name)
    log.info("%s training: domains with data: %s", kind, out)
    return out


def _start_model(*, config: PipelineConfig, store: ObjectStore, slot_name: str, kind: str,
                 prefix: str) -> StartModel:
    """Weekly: the slot's production model, else its base model; monthly: always the base model."""
    production = production_ref(store, slot_name, prefix=prefix) if kind == "weekly" else None
    if production is not None:
        return StartModel(artifact_id=production.artifact_id, version=production.version, root=production.root,
                          source="production")
    base = base_ref(config=config, store=store, domain=slot_name)
    if base is None:
        raise RunRefused(f"{slot_name}: no base model in the object store; build one first: "
                         f"python -m pipelines train build-domain-base --domain {slot_name}")
    return StartModel(artifact_id=base.artifact_id, version=base.version, root=base.root, source="base")


def plan_run(*, config: PipelineConfig, store: ObjectStore, request: RunRequest | Mapping[str, Any]) -> TrainPlan:
    """Choose the records, calibrate the noise, check (per record) and reserve the privacy budget.

    Returns:
        The plan (``to_dict()`` for XCom): partitions with versions and digests, the start model, sigma, q, steps,
        epsilon; ``dry_run`` plans reserve nothing.

    Raises:
        RunRefused: no trainable data, no base model, or the budget would be exceeded (nothing reserved).
    """
    request = request if isinstance(request, RunRequest) else RunRequest.from_dict(request)
    name, kind = request.domain, request.kind
    slot, training, privacy, artifacts, _max_drop = slot_configs(config=config, name=name)
    # A retry of this run (same run id) plans the same records again, under the same ledger entry.
    partitions, train, held, records, subjects = run_data(config=config, store=store, slot=slot, training=training,
                                                          privacy=privacy, kind=kind, run_id=request.run_id)
    if not partitions or len(train) < _MIN_TRAIN:
        raise RunRefused(f"{name}: nothing to train on for a {kind} run ({len(records)} new record(s) in "
                         f"{len(partitions)} partition(s), {len(train)} training example(s))")
    if not held:
        raise RunRefused(f"{name}: no held-out examples (eval_percent={training.eval_percent}); the gate needs some")
    try:
        # δ against the n the run reads (a monthly retrain reads all history), before anything is reserved.
        # (A forecaster's unit is a series: one training example each, its held-out windows are not units.)
        n_read = len(train) if slot.is_forecast else len(train) + len(held)
        check_delta(delta=privacy.delta, records=n_read, domain=slot.domain)
    except ValueError as exc:
        raise RunRefused(f"{name}: {exc}") from None
    batches = -(-len(train) // training.batch_size)
    epochs = training.monthly_epochs if kind == "monthly" else training.epochs
    sample_rate, steps = 1.0 / batches, epochs * batches
    if request.epsilon is not None:
        try:
            privacy = replace(privacy, **{f"{kind}_epsilon": float(request.epsilon)})
        except ConfigError as exc:
            raise RunRefused(f"{name}: epsilon={request.epsilon} for this run: {exc}") from None
    try:
        planned = plan_privacy(config=privacy, store=store, domain=name, kind=kind,
                               partitions=[p.interval for p in partitions], sample_rate=sample_rate, steps=steps,
                               run_id=request.run_id, records=records, subjects=subjects)
    except BudgetExceeded as exc:  # DeltaTooLarge included: its message says which δ would do
        raise RunRefused(str(exc)) from None
    plan = TrainPlan(
        domain=name, kind=kind, task=slot.task, run_id=request.run_id, dry_run=request.dry_run,
        requested_by=request.requested_by, partitions=tuple(partitions), train_examples=len(train),
        eval_examples=len(held),
        start=_start_model(config=config, store=store, slot_name=name, kind=kind, prefix=artifacts.prefix),
        sample_rate=planned.sample_rate, steps=planned.steps, noise_multiplier=planned.noise_multiplier,
        epsilon=planned.epsilon, delta=planned.delta, accountant=planned.accountant,
        max_grad_norm=planned.max_grad_norm, records=PlannedRecords(count=len(records), sha256=records.sha256),
        subject_epsilon=planned.subject_epsilon,
        max_records_per_subject=privacy.max_records_per_subject if subjects is not None else None,
        warnings=budget_warnings(n_train=len(train), epsilon=planned.epsilon, min_n_epsilon=training.min_n_epsilon,
                                 method=training.method, base=training.base))
    for line in plan.warnings:
        log.warning("%s %s: %s", name, request.run_id, line)
    if request.dry_run:
        log.info("dry run %s: %s", request.run_id, json.dumps(plan.to_dict()))
        return plan
    try:
        entry = reserve_budget(config=privacy, store=store, plan=planned, run_id=request.run_id,
                               created_by=request.requested_by)
    except BudgetExceeded as exc:
        raise RunRefused(str(exc)) from None
    ledger_key = entry.key if getattr(entry, "key", "") else entry_key(config=privacy, domain=name,
                                                                        run_id=request.run_id)
    log.info("planned %s: %d records in %d partitions, %d train / %d held-out, q=%.4f steps=%d sigma=%.3f eps=%.4f",
             request.run_id, len(records), len(partitions), len(train), len(held), sample_rate, steps,
             planned.noise_multiplier, planned.epsilon)
    return replace(plan, ledger_key=ledger_key)
