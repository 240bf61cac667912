"""What a run reads: its model slot's configs, the curated partitions (or forecast series) and their split.

Shared by planning (which partitions, how many examples) and training (the pinned versions read again).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import NamedTuple

from pipelines.config import PROJECT_ROOT, ArtifactsConfig, PipelineConfig
from pipelines.finetune.handover import PinnedPartition, RunRefused
from pipelines.forecast import ModelSlot, forecast_examples, forecast_partitions, interval_series, model_slot, \
    series_digest
from pipelines.privacy import (
    PrivacyConfig, RecordSet, SubjectMap, bound_contributions, untrained_records,
)
from pipelines.privacy.migrate import partition_record
from pipelines.publish import list_partitions, partition_prefix, read_committed_rows, read_version_rows, sha256_hex
from pipelines.storage import ObjectStore
from pipelines.train.config import TrainingConfig
from pipelines.train.data import examples_for_task, split_by_hash


class SlotConfigs(NamedTuple):
    """The stage configs of a model slot: its domain's (a forecaster shares them)."""

    slot: ModelSlot
    training: TrainingConfig
    privacy: PrivacyConfig
    artifacts: ArtifactsConfig
    max_drop: float


def slot_configs(*, config: PipelineConfig, name: str) -> SlotConfigs:
    """Resolve a slot name (``legal`` or ``finance_forecast``) and the configs that apply to it."""
    slot = model_slot(config=config, name=name)
    settings = config.for_domain(slot.domain)
    training = settings.training
    return SlotConfigs(slot=slot, training=training.for_forecaster() if slot.is_forecast else training,
                       privacy=settings.require_privacy(), artifacts=config.artifacts, max_drop=settings.max_drop)


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


class RunData(NamedTuple):
    """What a run reads: the pinned partitions, its train and held-out examples, and the records it is charged for.

    ``records`` is the exact set of content hashes of ``train`` (a forecaster: one pseudo-record per interval,
    ``partition_record``); ``subjects`` maps the records that carry a ``subject_sha256`` to it.
    """

    partitions: list[PinnedPartition]
    train: list[dict]
    held: list[dict]
    records: RecordSet
    subjects: SubjectMap | None


def _series_record(slot: ModelSlot, interval: str) -> bytes:
    # One forecaster interval's series are read together by every run that reads one: one pseudo-record each.
    return partition_record(slot.domain, interval)


def _bound_subjects(records: RecordSet, subject_of: dict[str, str], *, privacy: PrivacyConfig,
                    run_id: str) -> tuple[RecordSet, SubjectMap | None]:
    """At most ``privacy.max_records_per_subject`` records per subject (when set); the subject map of the rest."""
    pairs = [(h, subject_of.get(h)) for h in records.hexes()]
    if not any(s for _h, s in pairs):
        return records, None
    if privacy.max_records_per_subject:
        return bound_contributions(pairs, max_per_subject=privacy.max_records_per_subject, run_key=run_id)
    return records, SubjectMap.of((h, s) for h, s in pairs if s)


def run_data(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot, training: TrainingConfig,
             privacy: PrivacyConfig, kind: str, run_id: str) -> RunData:
    """The records a run of ``kind`` reads, from every committed partition of the slot (newest versions).

    Monthly: every training record. Weekly: only records no earlier counted weekly run read
    (``untrained_records``; a retry of ``run_id`` is not its own earlier run). Partitions are not the unit: a
    record that a backfill moved to another partition is still the record an earlier run read. Then at most
    ``privacy.max_records_per_subject`` records per subject (records with a ``subject_sha256``). The plan pins the
    partitions that hold a record it reads; the held-out split comes from those partitions.

    Raises:
        LedgerError: the slot's ledger still has per-partition entries (``python -m pipelines privacy migrate``).
    """
    if slot.is_forecast:
        parts = forecast_partitions(config=config, store=store, slot=slot)
        records = RecordSet.of(_series_record(slot, p["interval"]) for p, _v in parts)
        if kind == "weekly":
            records = untrained_records(config=privacy, store=store, domain=slot.name, candidates=records,
                                        kind="weekly", exclude_run=run_id)
        parts = [(p, v) for p, v in parts if _series_record(slot, p["interval"]) in records]
        train, held = forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
        return RunData([PinnedPartition.from_dict(p) for p, _ in parts], train, held, records, None)
    parts = [(part, *_examples(slot.task, rows, training.eval_percent), rows)
             for part, rows in _committed(config, store, slot.name, None)]
    records = RecordSet.of(e["content_sha256"] for _p, train, _h, _r in parts for e in train)
    if kind == "weekly" and len(records):
        records = untrained_records(config=privacy, store=store, domain=slot.name, candidates=records,
                                    kind="weekly", exclude_run=run_id)
    subject_of = {r["content_sha256"]: r["subject_sha256"] for _p, _t, _h, rows in parts for r in rows
                  if r.get("subject_sha256") and r.get("content_sha256")}
    records, subjects = _bound_subjects(records, subject_of, privacy=privacy, run_id=run_id)
    kept = set(records.hexes())
    pinned, train, held = [], [], []
    for part, part_train, part_held, _rows in parts:
        mine = [e for e in part_train if e["content_sha256"] in kept]
        if mine or (kind == "monthly" and part_held):
            pinned.append(part)
            train += mine
            held += part_held
    return RunData(pinned, train, held, records, subjects)


def pinned_data(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot, training: TrainingConfig,
                partitions: tuple[PinnedPartition, ...], records: RecordSet) -> tuple[list[dict], list[dict]]:
    """``(train, held-out)`` of the partition versions a plan pinned, train filtered to exactly ``records``.

    ``records`` is the set the run reserved in the ledger (``planned_records``): training reads nothing else,
    and every record of it must be found in the pinned versions.

    Raises:
        RunRefused: the pinned data no longer holds every planned record (plan a new run).
    """
    if slot.is_forecast:
        parts = []
        for part in partitions:
            if _series_record(slot, part.interval) not in records:
                continue
            values = interval_series(part.interval, series=training.forecast_series, length=training.forecast_length)
            if series_digest(values) != part.digest:
                # The series settings changed between plan and training: the reservation was for other data.
                raise RunRefused(f"{slot.name}: the series of {part.interval} differ from the planned ones "
                                 "(training.forecast_* changed since the plan); plan a new run")
            parts.append((part.to_dict(), values))
        if len(parts) != len(records):
            raise RunRefused(f"{slot.name}: the plan pinned {len(parts)} of the {len(records)} series intervals its "
                             "ledger entry reserved; plan a new run")
        return forecast_examples(parts, window=training.forecast_window, eval_tail=training.forecast_eval_tail)
    rows = []
    for part in partitions:
        prefix = partition_prefix(config.storage.curated_prefix, slot.name, part.interval)
        rows += read_version_rows(store, prefix, part.version)
    train, held = _examples(slot.task, rows, training.eval_percent)
    kept = set(records.hexes())
    train = [e for e in train if e["content_sha256"] in kept]
    found = {e["content_sha256"] for e in train}
    if len(found) != len(records):
        raise RunRefused(f"{slot.name}: {len(records) - len(found)} of the {len(records)} records the run reserved "
                         "are not in the pinned partition versions (purged or re-published since the plan); "
                         "plan a new run")
    return train, held
