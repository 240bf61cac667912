"""Which records (and subjects) which runs read: what a weekly run may still train, each record's and
subject's ε, and which artifacts were trained on a record that is being erased.

All of it reads the ledger's record sets (``record_store``); nothing here looks at partitions, so a
record that moved to another partition is still the record earlier runs read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipelines.artifacts import current_production, list_artifacts, promotion_history, read_artifact_manifest
from pipelines.privacy.config import KINDS, PrivacyConfig
from pipelines.privacy.ledger_store import LedgerError, read_ledger, record_runs
from pipelines.privacy.record_accounting import (
    RecordGroupSpend,
    RecordRun,
    SubjectSpend,
    record_epsilons,
    subject_epsilons,
)
from pipelines.privacy.records import RecordSet, contains, hash_subject
from pipelines.storage import ObjectStore


def _runs(config: PrivacyConfig, store: ObjectStore, domain: str, exclude_run: str | None = None) -> list[RecordRun]:
    return record_runs(config=config, store=store, domain=domain,
                       records=read_ledger(config=config, store=store, domain=domain), exclude_run=exclude_run)


def untrained_records(*, config: PrivacyConfig, store: ObjectStore, domain: str, candidates: RecordSet,
                      kind: str = "weekly", exclude_run: str | None = None) -> RecordSet:
    """The ``candidates`` that no earlier counted run of ``kind`` read: what a weekly run may train.

    A record that a late backfill moved into an older partition keeps its content hash, so a weekly
    run that already read it (under its old partition) excludes it here.

    Args:
        config: the domain's privacy settings.
        store: the object store holding the ledger.
        domain: the domain (or forecaster slot) whose ledger is read.
        candidates: content hashes of every curated record the run could read.
        kind: runs of this kind exclude a record (``weekly``: incremental runs train each record once).
        exclude_run: a retry of this run id plans again under its own entry, which must not exclude itself.

    Raises:
        LedgerError: a legacy entry without a record set (migrate first), or a record set that does not match.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    mask = np.ones(len(candidates), dtype=bool)
    for run in _runs(config, store, domain, exclude_run):
        if run.kind == kind:
            mask &= ~contains(run.records, candidates)
    return RecordSet(candidates.array()[mask].tobytes())


def planned_records(*, config: PrivacyConfig, store: ObjectStore, domain: str, run_id: str) -> RecordSet:
    """The record set a reserved run may train on (training filters its rows to exactly these).

    Raises:
        LedgerError: no entry, or an entry without a record set (a partition-level plan), or a mismatching set.
    """
    record = next((r for r in read_ledger(config=config, store=store, domain=domain) if r.entry.run_id == run_id), None)
    if record is None:
        raise LedgerError(f"no ledger entry for run {run_id} of {domain}: reserve_budget before training")
    if not record.counted:
        raise LedgerError(f"run {run_id} of {domain} is void: it must not train")
    if record.records_ref is None:
        raise LedgerError(f"run {run_id} of {domain} was reserved per partition: it has no record set to train on")
    return record_runs(config=config, store=store, domain=domain, records=[record])[0].records


def record_report(*, config: PrivacyConfig, store: ObjectStore, domain: str) -> list[RecordGroupSpend]:
    """Every record some counted run read, grouped by the runs that read it, with its composed ε."""
    return record_epsilons(config=config, runs=_runs(config, store, domain))


def subject_report(*, config: PrivacyConfig, store: ObjectStore, domain: str) -> list[SubjectSpend]:
    """ε per subject (group privacy over the subject's records), for runs that recorded subjects."""
    return subject_epsilons(config=config, runs=_runs(config, store, domain))


@dataclass(frozen=True)
class TrainedArtifact:
    """An artifact whose training (its own run, or a run of an ancestor it was fine-tuned from) read the records."""

    artifact_id: str
    version: str
    kind: str
    runs: tuple[str, ...]  # the ledger runs in its lineage that read the records
    promoted: bool
    in_production: bool


def runs_that_read(*, config: PrivacyConfig, store: ObjectStore, domain: str, records: Iterable[str | bytes] = (),
                   subject_ids: Iterable[str] = ()) -> list[str]:
    """Run ids of counted runs that read any of ``records`` or any record of ``subject_ids``."""
    wanted = RecordSet.of(records)
    subjects = {hash_subject(s, domain=domain) for s in subject_ids}
    out = []
    for run in _runs(config, store, domain):
        hit = bool(contains(run.records, wanted).any()) if len(wanted) else False
        if not hit and subjects and run.subjects is not None:
            hit = any(s in subjects for _r, s in run.subjects.pairs())
        if hit:
            out.append(run.run_id)
    return out


def artifacts_trained_on(*, config: PrivacyConfig, store: ObjectStore, domain: str, artifacts_prefix: str,
                         records: Iterable[str | bytes] = (), subject_ids: Iterable[str] = (),
                         promoted_only: bool = True) -> list[TrainedArtifact]:
    """The artifacts trained on a record or subject being purged (for the purge report and the retrain).

    An artifact is trained on a record if a run in its lineage read it: its own ledger run
    (``dp.ledger_key``), or that of the artifact it was fine-tuned from (``parent``, recursively).

    Args:
        config: the domain's privacy settings (its ledger).
        store: the object store.
        domain: the domain (or forecaster slot).
        artifacts_prefix: ``ArtifactsConfig.prefix`` (e.g. ``models``).
        records: content hashes being purged.
        subject_ids: subject ids (as given at ingestion; hashed here) being purged.
        promoted_only: only artifacts that were ever promoted (or rolled back to).

    Returns:
        Oldest first; ``in_production`` marks the current production artifact.
    """
    hit_runs = set(runs_that_read(config=config, store=store, domain=domain, records=records,
                                  subject_ids=subject_ids))
    folder = f"{config.ledger_prefix}/{domain}/"
    manifests = {}
    for ref in list_artifacts(store, domain, prefix=artifacts_prefix):
        manifests[ref.artifact_id] = (ref, read_artifact_manifest(store, ref))

    def own_run(manifest: dict) -> str | None:
        key = str((manifest.get("dp") or {}).get("ledger_key") or "")
        return key[len(folder):-len(".json")] if key.startswith(folder) and key.endswith(".json") else None

    def lineage_hits(artifact_id: str, seen: frozenset = frozenset()) -> tuple[str, ...]:
        if artifact_id in seen or artifact_id not in manifests:
            return ()
        manifest = manifests[artifact_id][1]
        mine = own_run(manifest)
        parent = manifest.get("parent")
        inherited = lineage_hits(parent, seen | {artifact_id}) if parent else ()
        return tuple(sorted({*inherited, *([mine] if mine in hit_runs else [])}))

    history = promotion_history(store, domain, prefix=artifacts_prefix)
    promoted = {r.artifact_id for r in history}
    production = current_production(store, domain, prefix=artifacts_prefix)
    out = []
    for artifact_id, (ref, _manifest) in manifests.items():
        runs = lineage_hits(artifact_id)
        if not runs or (promoted_only and artifact_id not in promoted):
            continue
        out.append(TrainedArtifact(artifact_id=artifact_id, version=ref.version, kind=ref.kind, runs=runs,
                                   promoted=artifact_id in promoted,
                                   in_production=production is not None and production.artifact_id == artifact_id))
    return out


__all__ = ["TrainedArtifact", "artifacts_trained_on", "planned_records", "record_report", "runs_that_read", "subject_report",
           "untrained_records"]
