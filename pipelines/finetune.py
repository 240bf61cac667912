"""Domain training runs: curated partitions -> DP training -> artifact -> gate -> production.

One run of one domain goes through three steps, each a task of the ``domain_finetune`` and
``monthly_full_retrain`` DAGs and all three run in order by ``python -m pipelines train domain``:

1. ``plan_run``: picks the partitions (weekly: committed partitions no weekly run has read yet;
   monthly: every committed partition), splits their examples by content hash (the held-out split the
   gate compares on), calibrates the noise for the domain's per-run ε and checks every partition's
   budget (``pipelines.privacy``) **before any training**, then reserves the spend in the ledger.
2. ``train_run``: fetches and verifies the start model (weekly: production, or the base model the
   first time; monthly: the base model), trains with Opacus DP-SGD from the pinned partition versions,
   checkpointing every epoch under ``<checkpoint_root>/<run_id>`` (a retry resumes there), evaluates
   production on the same held-out split, and pushes a content-addressed artifact with its manifest
   (data digests, DP parameters and ε, metrics, code version) and model card.
3. ``promote_run``: the evaluation gate against production; promotes with a create-only numbered record
   or alerts and leaves production untouched.

The noise of a run is seeded from the OS CSPRNG (``secrets``) unless ``training.seed`` pins it (tests);
the seed lives only in the run's checkpoint folder on the training host, next to the weights, so a
resumed attempt replays exactly the noise of the steps it repeats and releases nothing new.

Every step takes a model slot name where it takes a domain: a configured domain, or the forecaster slot
``<domain>_forecast`` of a domain with ``training.forecast: true`` (:mod:`pipelines.forecast`: task
``forecast``, series published with the domain's curated intervals, gated on MAE, the domain's budget).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.config import PROJECT_ROOT, ConfigError, PipelineConfig
from pipelines.storage import ObjectStore

log = logging.getLogger("pipelines.finetune")
KINDS = ("weekly", "monthly")
BASE_PREFIX_PART = "base"  # base models: <artifacts prefix>/base/<domain>/<artifact_id>/


class RunRefused(ValueError):
    """The run may not train (budget, no data, missing base model); the message says what to do."""


@dataclass(frozen=True)
class RunRequest:
    """What to train: one domain, weekly or monthly, under a run id unique to the DAG run."""

    domain: str
    kind: str
    run_id: str
    epsilon: float | None = None
    dry_run: bool = False
    requested_by: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r}: use weekly or monthly")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ConfigError(f"epsilon={self.epsilon!r}: must be > 0")


# ------------------------------------------------------------------------------------------ helpers
def code_version() -> str:
    """The git revision of the code that trains, or a digest of the pipelines package when not in git."""
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "pipelines").rglob("*.py")):
        digest.update(path.read_bytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def _slot(config: PipelineConfig, name: str):
    from pipelines.forecast import model_slot

    return model_slot(config, name)


def _stage_configs(config: PipelineConfig, domain: str):
    """Training, privacy, artifacts config and max_drop of a slot: its domain's (a forecaster shares them)."""
    from pipelines.artifacts import artifacts_config, domain_max_drop
    from pipelines.privacy import privacy_config
    from pipelines.train.config import training_config

    owner = _slot(config, domain).domain
    return (training_config(config, owner), privacy_config(config, owner), artifacts_config(config),
            domain_max_drop(config, owner))


def _committed(config: PipelineConfig, store: ObjectStore, domain: str,
               only: set[str] | None = None) -> list[tuple[dict, list[dict]]]:
    """``(partition info, rows)`` of each committed partition (newest version), oldest interval first."""
    from pipelines.publish import list_partitions, partition_prefix, read_committed_rows, sha256_hex

    out = []
    for name in sorted(list_partitions(store, config.storage.curated_prefix, domain)):
        if only is not None and name not in only:
            continue
        prefix = partition_prefix(config.storage.curated_prefix, domain, name)
        found = read_committed_rows(store, prefix)
        if found is None:
            continue
        commit, rows = found
        digest = sha256_hex("\n".join(sorted(str(r.get("content_sha256") or r.get("id")) for r in rows)).encode())
        out.append(({"interval": name, "version": commit.version, "rows": len(rows), "digest": digest}, rows))
    return out


def _trained_partitions(config: PipelineConfig, store: ObjectStore, domain: str, *, exclude_run: str = "") -> set[str]:
    """Partitions some counted weekly run (other than ``exclude_run``: a retry of it) has read."""
    from pipelines.privacy import privacy_config, read_ledger

    owner = _slot(config, domain).domain
    return {p for record in read_ledger(config=privacy_config(config, owner), store=store, domain=domain)
            if record.counted and record.entry.kind == "weekly" and record.entry.run_id != exclude_run
            for p in record.entry.partitions}


def _examples(task: str, rows: list[dict], eval_percent: int) -> tuple[list[dict], list[dict]]:
    from pipelines.train.data import examples_for_task, split_by_hash

    return split_by_hash(examples_for_task(task, rows), eval_percent=eval_percent)


def _run_data(config: PipelineConfig, store: ObjectStore, slot, training,
              only: set[str] | None) -> tuple[list[dict], list[dict], list[dict]]:
    """``(partition infos, train, held-out)`` of a slot: curated rows split by hash, or series windows."""
    if slot.is_forecast:
        from pipelines.forecast import forecast_examples, forecast_partitions

        parts = forecast_partitions(config, store, slot, only=only)
        train, held = forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
        return [p for p, _ in parts], train, held
    parts = _committed(config, store, slot.name, only)
    train, held = _examples(slot.task, [r for _, part_rows in parts for r in part_rows], training.eval_percent)
    return [p for p, _ in parts], train, held


def _pinned_data(config: PipelineConfig, store: ObjectStore, slot, training,
                 partitions: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(train, held-out)`` of the partition versions a plan pinned (read again: data is not in XCom)."""
    from pipelines.publish import partition_prefix, read_parquet_rows

    if slot.is_forecast:
        from pipelines.forecast import forecast_examples, interval_series, series_digest

        parts = []
        for part in partitions:
            values = interval_series(part["interval"], series=training.forecast_series,
                                     length=training.forecast_length)
            if series_digest(values) != part["digest"]:
                # The series settings changed between plan and training: the reservation was for other data.
                raise RunRefused(f"{slot.name}: the series of {part['interval']} differ from the planned ones "
                                 "(training.forecast_* changed since the plan); plan a new run")
            parts.append((part, values))
        return forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
    rows = []
    for part in partitions:
        prefix = partition_prefix(config.storage.curated_prefix, slot.name, part["interval"])
        rows += read_parquet_rows(store.get(f"{prefix}/v-{part['version']}/data.parquet"))
    return _examples(slot.task, rows, training.eval_percent)


def base_ref(config: PipelineConfig, store: ObjectStore, domain: str):
    """The domain's current base model (newest promotion under ``<prefix>/base``), or None."""
    from pipelines.artifacts import artifacts_config, current_production, load_ref

    prefix = artifacts_config(config).prefix
    record = current_production(store, domain, prefix=f"{prefix}/{BASE_PREFIX_PART}")
    return None if record is None else load_ref(store, domain, record.artifact_id, prefix=prefix, base=True)


def _start_ref(config: PipelineConfig, store: ObjectStore, domain: str, kind: str):
    from pipelines.artifacts import artifacts_config, production_ref

    production = production_ref(store, domain, prefix=artifacts_config(config).prefix) if kind == "weekly" else None
    if production is not None:
        return production, "production"
    base = base_ref(config, store, domain)
    if base is None:
        raise RunRefused(f"{domain}: no base model in the object store; build one first: "
                         f"python -m pipelines train build-domain-base --domain {domain}")
    return base, "base"


# --------------------------------------------------------------------------------------- the steps
def domains_to_train(config: PipelineConfig, store: ObjectStore, *, kind: str, only: str | None = None) -> list[str]:
    """Domains with something to train: weekly, a committed partition no weekly run read; monthly, any data.

    Forecaster slots (``finance_forecast``) follow the domains; ``only`` names one domain or slot.
    """
    from pipelines.forecast import forecast_slots

    domains = [_slot(config, only).name] if only else sorted(config.domains) + forecast_slots(config)
    out = []
    for domain in domains:
        from pipelines.publish import list_partitions

        names = set(list_partitions(store, config.storage.curated_prefix, _slot(config, domain).domain))
        if kind == "weekly":
            names -= _trained_partitions(config, store, domain)
        if names:
            out.append(domain)
    log.info("%s training: domains with data: %s", kind, out)
    return out


def plan_run(config: PipelineConfig, store: ObjectStore, *, request: RunRequest | dict) -> dict:
    """Choose the partitions, calibrate the noise, check and reserve the privacy budget.

    Returns:
        The plan (a small dict for XCom): partitions with versions and digests, the start model, sigma,
        q, steps, epsilon; ``dry_run`` plans reserve nothing.

    Raises:
        RunRefused: no trainable data, no base model, or the budget would be exceeded (nothing reserved).
    """
    from pipelines.privacy import BudgetExceeded, reserve_budget
    from pipelines.privacy import plan_run as plan_privacy

    request = request if isinstance(request, RunRequest) else RunRequest(**request)
    domain, kind = request.domain, request.kind
    slot = _slot(config, domain)
    task = slot.task
    training, privacy, _artifacts, _ = _stage_configs(config, domain)
    only = None
    if kind == "weekly":
        # A retry of this run (same run id) plans the same partitions again, under the same ledger entry.
        done = _trained_partitions(config, store, domain, exclude_run=request.run_id)
        from pipelines.publish import list_partitions

        only = set(list_partitions(store, config.storage.curated_prefix, slot.domain)) - done
    partitions, train, held = _run_data(config, store, slot, training, only)
    if not partitions or len(train) < 2:
        raise RunRefused(f"{domain}: nothing to train on for a {kind} run ({len(partitions)} new partition(s), "
                         f"{len(train)} training example(s))")
    if not held:
        raise RunRefused(f"{domain}: no held-out examples (eval_percent={training.eval_percent}); the gate needs some")
    batches = -(-len(train) // training.batch_size)
    epochs = training.monthly_epochs if kind == "monthly" else training.epochs
    sample_rate, steps = 1.0 / batches, epochs * batches
    if request.epsilon is not None:
        try:
            privacy = replace(privacy, **{f"{kind}_epsilon": float(request.epsilon)})
        except ConfigError as exc:
            raise RunRefused(f"{domain}: epsilon={request.epsilon} for this run: {exc}") from None
    try:
        planned = plan_privacy(config=privacy, store=store, domain=domain, kind=kind,
                               partitions=[p["interval"] for p in partitions], sample_rate=sample_rate, steps=steps,
                               run_id=request.run_id)
    except BudgetExceeded as exc:
        raise RunRefused(str(exc)) from None
    start, start_from = _start_ref(config, store, domain, kind)
    plan = {
        "domain": domain, "kind": kind, "task": task, "run_id": request.run_id, "dry_run": request.dry_run,
        "requested_by": request.requested_by,
        "partitions": partitions, "train_examples": len(train), "eval_examples": len(held),
        "start": {"artifact_id": start.artifact_id, "version": start.version, "root": start.root, "from": start_from},
        "sample_rate": planned.sample_rate, "steps": planned.steps, "noise_multiplier": planned.noise_multiplier,
        "epsilon": planned.epsilon, "delta": planned.delta, "accountant": planned.accountant,
        "max_grad_norm": planned.max_grad_norm,
    }
    if request.dry_run:
        log.info("dry run %s: %s", request.run_id, json.dumps(plan))
        return plan
    try:
        entry = reserve_budget(config=privacy, store=store, plan=planned, run_id=request.run_id,
                               created_by=request.requested_by)
    except BudgetExceeded as exc:
        raise RunRefused(str(exc)) from None
    plan["ledger_key"] = entry.key if getattr(entry, "key", "") else _ledger_key(privacy, domain, request.run_id)
    log.info("planned %s: %d partitions, %d train / %d held-out, q=%.4f steps=%d sigma=%.3f eps=%.4f",
             request.run_id, len(partitions), len(train), len(held), sample_rate, steps, planned.noise_multiplier,
             planned.epsilon)
    return plan


def _ledger_key(privacy, domain: str, run_id: str) -> str:
    from pipelines.privacy import entry_key

    return entry_key(config=privacy, domain=domain, run_id=run_id)


def checkpoint_root(training) -> Path:
    """Where runs checkpoint (local disk of the training host): ``training.checkpoint_root``."""
    path = Path(training.checkpoint_root)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _seed(folder: Path, training) -> int:
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


def train_run(config: PipelineConfig, store: ObjectStore, *, plan: dict, log_every: int = 10) -> dict:
    """Train the planned run (resuming a crashed attempt) and push its artifact.

    Returns:
        ``{"domain", "run_id", "artifact_id", "version", "metrics", "baseline", ...}`` (or the plan with
        ``skipped`` for a dry run).
    """
    from pipelines.artifacts import (
        build_manifest, claim_version, fetch_cached, load_ref, push_artifact, write_model_card,
    )
    from pipelines.privacy import complete_run, privacy_config, spend_history
    from pipelines.train.config import spec_from_config
    from pipelines.train.data import read_lexicon, with_weights, write_jsonl
    from pipelines.train.trainer import evaluate_model, fit

    if plan.get("dry_run"):
        return {**plan, "skipped": "dry run"}
    domain, kind, run_id = plan["domain"], plan["kind"], plan["run_id"]
    slot = _slot(config, domain)
    owner_privacy = privacy_config(config, slot.domain)
    training, privacy, artifacts, _ = _stage_configs(config, domain)
    marker = f"{artifacts.prefix}/{domain}/runs/{_safe(run_id)}.json"
    if store.exists(marker):  # pushed by an earlier attempt: the artifact is immutable, nothing to redo
        return json.loads(store.get(marker))

    # The pinned partition versions, read again (large data moves through the store, not XCom).
    train, held = _pinned_data(config, store, slot, training, plan["partitions"])
    if training.weight_terms_file and not slot.is_forecast:
        terms = read_lexicon(_project_path(training.weight_terms_file))
        train = with_weights(train, terms=terms, factor=training.weight_factor)

    start_prefix = plan["start"]["root"].rsplit("/", 2)[0] if plan["start"]["from"] == "production" else None
    start = (load_ref(store, domain, plan["start"]["artifact_id"], prefix=artifacts.prefix)
             if start_prefix else base_ref(config, store, domain))
    if start is None or start.artifact_id != plan["start"]["artifact_id"]:
        start = _ref_by_root(store, plan["start"])
    start_dir = fetch_cached(store, start, cache_dir=artifacts.cache_path)

    folder = checkpoint_root(training) / _safe(run_id)
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = write_jsonl(work / "train.jsonl", train), write_jsonl(work / "eval.jsonl", held)
    out_dir = work / "model"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    spec = spec_from_config(training, model_dir=str(start_dir), out_dir=str(out_dir),
                            checkpoint_dir=str(folder / "checkpoints"), train_path=str(train_path),
                            eval_path=str(eval_path), noise_multiplier=plan["noise_multiplier"], delta=plan["delta"],
                            kind=kind, accountant=plan["accountant"],
                            overrides={"seed": _seed(folder, training), "log_every": log_every,
                                       "max_grad_norm": plan["max_grad_norm"],
                                       # No text to weigh, no LoRA targets in the forecaster.
                                       **({"weight_terms": (), "method": "full"} if slot.is_forecast else {})})
    result = fit(spec)
    complete_run(config=owner_privacy, store=store, domain=domain, run_id=run_id,
                 steps=result.steps, epsilon=result.epsilon)

    # The gate's fair baseline: the current production model (else the start model) on this run's held-out split.
    # A monthly run starts from the base model, so production is fetched and evaluated here too.
    from pipelines.artifacts import production_ref

    judged = production_ref(store, domain, prefix=artifacts.prefix) or start
    judged_dir = start_dir if judged.artifact_id == start.artifact_id else fetch_cached(
        store, judged, cache_dir=artifacts.cache_path)
    baseline = evaluate_model(judged_dir, held, max_length=training.max_length, device=training.device)
    baseline["artifact_id"] = judged.artifact_id
    split = (f"tail{training.forecast_eval_tail}/window{training.forecast_window}" if slot.is_forecast
             else f"hash%100<{training.eval_percent}")
    metrics = {**result.metrics, "split": split, "eval_examples": len(held),
               "train_examples": len(train), "baseline": baseline}

    from pipelines.artifacts import current_production

    production = current_production(store, domain, prefix=artifacts.prefix)
    parent_version = production.version if (kind == "weekly" and production) else None
    version = claim_version(store, domain, kind=kind, parent_version=parent_version, prefix=artifacts.prefix,
                            run_id=run_id)
    dp = {"epsilon": plan["epsilon"], "epsilon_training": round(result.epsilon, 6), "delta": plan["delta"],
          "noise_multiplier": plan["noise_multiplier"], "sample_rate": plan["sample_rate"], "steps": result.steps,
          "accountant": plan["accountant"], "max_grad_norm": plan["max_grad_norm"], "ledger_key": plan.get("ledger_key"),
          "unit": "series" if slot.is_forecast else "record", "method": training.grad_sample_mode}
    data = [{**p, "domain": domain} for p in plan["partitions"]]
    manifest = build_manifest(out_dir, domain=domain, task=plan["task"], kind=kind, version=version,
                              parent=start.artifact_id, data=data, code_version=code_version(), dp=dp,
                              metrics=metrics, created_by=plan.get("requested_by") or "pipelines.finetune")
    points = [(when, eps) for when, _run, eps in spend_history(config=owner_privacy, store=store, domain=domain)]
    manifest = write_model_card(out_dir, manifest, result.history, epsilon_points=points,
                                epsilon_budget=owner_privacy.epsilon)
    ref = push_artifact(store, out_dir, domain=domain, prefix=artifacts.prefix)
    trained = {"domain": domain, "kind": kind, "run_id": run_id, "task": plan["task"], "artifact_id": ref.artifact_id,
               "version": ref.version, "root": ref.root, "metrics": {k: v for k, v in metrics.items() if k != "baseline"},
               "baseline": baseline, "epsilon": plan["epsilon"], "steps": result.steps}
    store.put(marker, json.dumps(trained, sort_keys=True).encode(), if_none_match=True)
    log.info("trained %s -> %s v%s %s", run_id, ref.artifact_id, ref.version, json.dumps(trained["metrics"]))
    return trained


def _ref_by_root(store: ObjectStore, start: dict):
    from pipelines.artifacts import ArtifactRef

    manifest = json.loads(store.get(f"{start['root']}/manifest.json"))
    return ArtifactRef(domain=manifest["domain"], artifact_id=manifest["artifact_id"], version=manifest["version"],
                       kind=manifest["kind"], task=manifest["task"], root=start["root"])


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in run_id)


def _project_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def promote_run(config: PipelineConfig, store: ObjectStore, *, trained: dict, who: str,
                audit=None) -> dict:
    """Gate the trained artifact against production and promote it, or alert and leave production as it is."""
    from pipelines.alerts import send_alert
    from pipelines.artifacts import evaluate_candidate, load_ref, promote

    if trained.get("skipped"):
        return trained
    domain = trained["domain"]
    training, _privacy, artifacts, max_drop = _stage_configs(config, domain)
    ref = load_ref(store, domain, trained["artifact_id"], prefix=artifacts.prefix)
    metric, higher = gate_metric(config, domain)
    decision = evaluate_candidate(store, domain, ref, max_drop=max_drop, metric=metric, higher_is_better=higher,
                                  prefix=artifacts.prefix)
    audit = audit if audit is not None else _audit(config, store)
    if not decision.passed:
        send_alert(config.alerts, title=f"{domain}: model {ref.version} not promoted",
                   text=f"- run: `{trained['run_id']}`\n- artifact: `{ref.artifact_id}`\n- gate: {decision.reason}\n"
                        "- production is unchanged")
        log.warning("gate refused %s: %s", ref.artifact_id, decision.reason)
        return {**trained, "promoted": False, "gate": _gate_dict(decision)}
    record = promote(store, domain, ref, gate=decision, who=who, why=f"{trained['kind']} run {trained['run_id']}",
                     prefix=artifacts.prefix, audit=audit)
    log.info("promoted %s v%s (record %s)", ref.artifact_id, ref.version, getattr(record, "number", "?"))
    return {**trained, "promoted": True, "gate": _gate_dict(decision),
            "promotion": getattr(record, "number", None)}


def _gate_dict(decision) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(decision) if is_dataclass(decision) else dict(decision)


def gate_metric(config: PipelineConfig, domain: str) -> tuple[str, bool]:
    """The metric a slot's gate compares: ``training.gate_metric`` or the task's (accuracy for classification).

    A forecaster slot is always gated on ``mae`` (lower is better): its domain's ``gate_metric`` names a
    metric of the domain's own task.
    """
    defaults = {"classification": ("accuracy", True), "causal_lm": ("perplexity", False), "forecast": ("mae", False)}
    from pipelines.train.config import training_config

    slot = _slot(config, domain)
    if slot.is_forecast:
        return defaults["forecast"]
    name = training_config(config, domain).gate_metric
    task_metric, task_higher = defaults[slot.task]
    if not name:
        return task_metric, task_higher
    lower = {"perplexity", "loss", "mae"}
    return str(name), str(name) not in lower


def _audit(config: PipelineConfig, store: ObjectStore):
    from pipelines.security.audit import audit_hook
    from pipelines.security.config import load_security_config

    return audit_hook(store, prefix=load_security_config(config).audit_prefix, who="pipelines.finetune")


def run_domain(config: PipelineConfig, store: ObjectStore, *, request: RunRequest, who: str,
               log_every: int = 10) -> dict:
    """All three steps in this process (the CLI on a GPU box; the DAGs run them as separate tasks)."""
    plan = plan_run(config, store, request=request)
    if plan.get("dry_run"):
        return plan
    trained = train_run(config, store, plan=plan, log_every=log_every)
    return promote_run(config, store, trained=trained, who=who)


# ------------------------------------------------------------------------------------ base models
def build_domain_base(config: PipelineConfig, store: ObjectStore, *, domain: str, who: str,
                      sample_dir: Path | None = None, size: str | None = None, seed: int = 0) -> dict:
    """Build a domain's base model and publish it as a base artifact (promoted under ``<prefix>/base``).

    The tokenizer and the label set come from public text (the bundled sample's landing files of the
    domain), never from curated private records: a vocabulary is not differentially private. A
    forecaster slot (``finance_forecast``) has no vocabulary: its random-init DPLSTM records only the
    number of generated series (:func:`pipelines.forecast.base_series`).
    """
    from pipelines.artifacts import build_manifest, promote, push_artifact, force_gate
    from pipelines.train.models import build_base_model

    training, _privacy, artifacts, _ = _stage_configs(config, domain)
    slot = _slot(config, domain)
    task = slot.task
    if slot.is_forecast:
        from pipelines.forecast import base_series

        texts: list[Any] = base_series(config, slot, seed=seed)
        labels: list[str] = []
        source = {"series": len(texts), "series_source": f"generated (make_sample_series seed {seed})"}
    else:
        texts, labels = _base_texts(domain, task, training, sample_dir)
        source = {"tokenizer_texts": len(texts), "tokenizer_source": "data/sample (public)"}
    with tempfile.TemporaryDirectory(prefix="base-") as tmp:
        folder = build_base_model(task=task, texts_or_series=texts, out_dir=Path(tmp) / "model", labels=labels,
                                  size=size or training.size, seed=seed,
                                  base="scratch" if slot.is_forecast else training.base,
                                  max_length=training.max_length)
        build_manifest(folder, domain=domain, task=task, kind="base", version="0.0", parent=None,
                       data=[], code_version=code_version(), dp=None, metrics=source, created_by=who)
        ref = push_artifact(store, folder, domain=domain, prefix=artifacts.prefix)  # <prefix>/base/<domain>/<id>
    # The domain's current base: numbered create-only records under <prefix>/base/<domain>/promotions/.
    promote(store, domain, ref, gate=force_gate(reason="base model"), who=who, why="base model",
            prefix=f"{artifacts.prefix}/{BASE_PREFIX_PART}")
    return {"domain": domain, "artifact_id": ref.artifact_id, "root": ref.root, "task": task, "labels": labels}


def _base_texts(domain: str, task: str, training, sample_dir: Path | None) -> tuple[list[str], list[str]]:
    """Public texts (and labels) a text model's tokenizer is trained on: the bundled sample of the domain."""
    from pipelines.label.data import sample_records

    records = sample_records(domain, **({"sample_dir": sample_dir} if sample_dir else {}))
    if task == "classification":
        texts = [r["text"] for r in records if isinstance(r.get("text"), str)]
        labels = sorted({r["label"] for r in records if isinstance(r.get("label"), str)}
                        | set(training.labels))
    else:
        texts = [f"{r['question']}\n{r['answer']}" for r in records
                 if isinstance(r.get("question"), str) and isinstance(r.get("answer"), str)]
        labels = []
    if len(texts) < 10:
        raise RunRefused(f"{domain}: only {len(texts)} public texts to build a tokenizer from")
    return texts, labels
