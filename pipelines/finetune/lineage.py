"""What an artifact says about the records behind it: each record's ε over time, subjects, erasures since the parent.

Read from the privacy ledger's record sets (the unit of account) and the audit log's ``data_deletion`` entries
(``pipelines.security.purge`` records the content hashes it erased there); written to the manifest's ``privacy``
block and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.artifacts import ArtifactNotFound, ArtifactRef, load_ref, read_artifact_manifest
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import TrainPlan
from pipelines.privacy import (
    LedgerError, PrivacyConfig, RecordSet, read_ledger, record_runs, record_spend_history, spend_history,
)
from pipelines.privacy.records import contains
from pipelines.security.audit import read_audit
from pipelines.storage import ObjectStore


def epsilon_points(*, privacy: PrivacyConfig, store: ObjectStore, domain: str) -> list[tuple[str, float]]:
    """``(when, ε)`` after each counted run: the worst record's composed ε (per partition on a legacy ledger)."""
    try:
        history = record_spend_history(config=privacy, store=store, domain=domain)
    except LedgerError:  # entries without record sets (not migrated yet): the per-partition view
        history = spend_history(config=privacy, store=store, domain=domain)
    return [(when, eps) for when, _run, eps in history]


def erased_records(*, config: PipelineConfig, store: ObjectStore, domain: str, since: str | None) -> RecordSet:
    """Content hashes that purges erased from ``domain``'s curated data at or after ``since`` (all if None)."""
    entries = read_audit(store, action="data_deletion", since=since, prefix=config.security.audit_prefix)
    return RecordSet.of(h for e in entries if (e.get("details") or {}).get("domain") == domain
                        for h in (e.get("details") or {}).get("content_sha256") or ())


def _lineage_runs(store: ObjectStore, ref: ArtifactRef | None, *, folder: str, prefix: str) -> set[str]:
    """Ledger run ids of ``ref`` and the artifacts it was fine-tuned from (base models have none)."""
    runs: set[str] = set()
    seen: set[str] = set()
    while ref is not None and ref.artifact_id not in seen:
        seen.add(ref.artifact_id)
        manifest = read_artifact_manifest(store, ref)
        key = str((manifest.get("dp") or {}).get("ledger_key") or "")
        if key.startswith(folder) and key.endswith(".json"):
            runs.add(key[len(folder):-len(".json")])
        parent = manifest.get("parent")
        try:
            ref = load_ref(store, ref.domain, parent, prefix=prefix) if parent else None
        except ArtifactNotFound:  # a parent outside the slot's artifacts (its base model): no ledger runs
            ref = None
    return runs


@dataclass(frozen=True)
class RecordFacts:
    """The manifest's ``privacy`` block: the unit, subjects, and erasures since the model this one follows."""

    unit: str
    subject_epsilon: float | None
    max_records_per_subject: int | None
    purged_since_parent: int
    purged_in_start_model: int

    def to_dict(self) -> dict[str, object]:
        return {"unit": self.unit, "subject_epsilon": self.subject_epsilon,
                "max_records_per_subject": self.max_records_per_subject,
                "purged_since_parent": self.purged_since_parent, "purged_in_start_model": self.purged_in_start_model}


def record_facts(*, config: PipelineConfig, store: ObjectStore, plan: TrainPlan, privacy: PrivacyConfig,
                 records: RecordSet, start: ArtifactRef, previous: ArtifactRef | None, unit: str,
                 artifacts_prefix: str, data_domain: str) -> RecordFacts:
    """What the card says about the run's records.

    Args:
        plan: the run's plan (subject ε and bound).
        records: the records the run trained on (``planned_records``).
        start: the model it was trained from (weekly: production; monthly: the base model).
        previous: the model it follows (production at training time, else None): erasures since it was created
            are counted; none of them is in ``records`` (purged records are gone from curated data).
        unit: ``record`` or ``series``.

    Raises:
        LedgerError: an erased record is in the run's record set (it must never be trained on again).
    """
    since = read_artifact_manifest(store, previous).get("created_at") if previous is not None else None
    # A forecaster's unit is an interval's series, which no purge of curated records touches.
    erased = RecordSet() if unit == "series" else erased_records(config=config, store=store, domain=data_domain,
                                                                 since=since)
    if contains(records, erased).any():
        raise LedgerError(f"{plan.domain}: run {plan.run_id} reserved a record that was purged; plan a new run")
    inherited = 0
    if len(erased):
        folder = f"{privacy.ledger_prefix}/{plan.domain}/"
        lineage = _lineage_runs(store, start, folder=folder, prefix=artifacts_prefix)
        ledger = [r for r in read_ledger(config=privacy, store=store, domain=plan.domain) if r.entry.run_id in lineage]
        read = RecordSet()
        for run in record_runs(config=privacy, store=store, domain=plan.domain, records=ledger):
            read = read.union(run.records)
        inherited = int(contains(read, erased).sum())
    return RecordFacts(unit=unit, subject_epsilon=plan.subject_epsilon,
                       max_records_per_subject=plan.max_records_per_subject, purged_since_parent=len(erased),
                       purged_in_start_model=inherited)
