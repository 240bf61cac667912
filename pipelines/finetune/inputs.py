"""What a run reads: its model slot's configs, the curated partitions (or forecast series) and their split.

Shared by planning (which partitions, how many examples) and training (the pinned versions read again).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import NamedTuple

from pipelines.artifacts import ArtifactsConfig, artifacts_config, domain_max_drop
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.finetune.handover import PinnedPartition, RunRefused
from pipelines.forecast import ModelSlot, forecast_examples, forecast_partitions, interval_series, model_slot, \
    series_digest
from pipelines.privacy import PrivacyConfig, privacy_config, read_ledger
from pipelines.publish import list_partitions, partition_prefix, read_committed_rows, read_parquet_rows, sha256_hex
from pipelines.storage import ObjectStore
from pipelines.train.config import TrainingConfig, training_config
from pipelines.train.data import examples_for_task, split_by_hash


class SlotConfigs(NamedTuple):
    """The stage configs of a model slot: its domain's (a forecaster shares them)."""

    slot: ModelSlot
    training: TrainingConfig
    privacy: PrivacyConfig
    artifacts: ArtifactsConfig
    max_drop: float


def slot_configs(config: PipelineConfig, name: str) -> SlotConfigs:
    """Resolve a slot name (``legal`` or ``finance_forecast``) and the configs that apply to it."""
    slot = model_slot(config, name)
    training = training_config(config, slot.domain)
    return SlotConfigs(slot=slot, training=training.for_forecaster() if slot.is_forecast else training,
                       privacy=privacy_config(config, slot.domain), artifacts=artifacts_config(config),
                       max_drop=domain_max_drop(config, slot.domain))


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


def project_path(value: str) -> Path:
    """A config path: absolute, or relative to the project root."""
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def trained_partitions(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot,
                       exclude_run: str = "") -> set[str]:
    """Partitions some counted weekly run of the slot (other than ``exclude_run``: a retry of it) has read."""
    return {p for record in read_ledger(config=privacy_config(config, slot.domain), store=store, domain=slot.name)
            if record.counted and record.entry.kind == "weekly" and record.entry.run_id != exclude_run
            for p in record.entry.partitions}


def curated_partitions(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot) -> set[str]:
    """Names of the curated partitions of the slot's domain (committed or not)."""
    return set(list_partitions(store, config.storage.curated_prefix, slot.domain))


def _committed(config: PipelineConfig, store: ObjectStore, domain: str,
               only: set[str] | None) -> list[tuple[PinnedPartition, list[dict]]]:
    """``(partition, rows)`` of each committed partition (newest version), oldest interval first."""
    out = []
    for name in sorted(list_partitions(store, config.storage.curated_prefix, domain)):
        if only is not None and name not in only:
            continue
        found = read_committed_rows(store, partition_prefix(config.storage.curated_prefix, domain, name))
        if found is None:
            continue
        commit, rows = found
        digest = sha256_hex("\n".join(sorted(str(r.get("content_sha256") or r.get("id")) for r in rows)).encode())
        out.append((PinnedPartition(interval=name, version=commit.version, rows=len(rows), digest=digest), rows))
    return out


def _examples(task: str, rows: list[dict], eval_percent: int) -> tuple[list[dict], list[dict]]:
    return split_by_hash(examples_for_task(task, rows), eval_percent=eval_percent)


def run_data(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot, training: TrainingConfig,
             only: set[str] | None) -> tuple[list[PinnedPartition], list[dict], list[dict]]:
    """``(partitions, train, held-out)`` of a slot: curated rows split by hash, or series windows."""
    if slot.is_forecast:
        parts = forecast_partitions(config, store, slot, only=only)
        train, held = forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
        return [PinnedPartition.from_dict(p) for p, _ in parts], train, held
    parts = _committed(config, store, slot.name, only)
    train, held = _examples(slot.task, [r for _, part_rows in parts for r in part_rows], training.eval_percent)
    return [p for p, _ in parts], train, held


def pinned_data(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot, training: TrainingConfig,
                partitions: tuple[PinnedPartition, ...]) -> tuple[list[dict], list[dict]]:
    """``(train, held-out)`` of the partition versions a plan pinned (read again: data is not in XCom)."""
    if slot.is_forecast:
        parts = []
        for part in partitions:
            values = interval_series(part.interval, series=training.forecast_series, length=training.forecast_length)
            if series_digest(values) != part.digest:
                # The series settings changed between plan and training: the reservation was for other data.
                raise RunRefused(f"{slot.name}: the series of {part.interval} differ from the planned ones "
                                 "(training.forecast_* changed since the plan); plan a new run")
            parts.append((part.to_dict(), values))
        return forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
    rows = []
    for part in partitions:
        prefix = partition_prefix(config.storage.curated_prefix, slot.name, part.interval)
        rows += read_parquet_rows(store.get(f"{prefix}/v-{part.version}/data.parquet"))
    return _examples(slot.task, rows, training.eval_percent)
