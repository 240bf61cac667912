"""Upgrade a ledger written per partition to per-record accounting (``python -m pipelines privacy migrate``).

A legacy entry names interval names only (``partitions``), and its reservation is create-only, so it
is never rewritten. Migration adds, next to it and create-only::

    <run_id>.migrated-<sha16>.records   the content digests the run read (content-addressed: a rerun rewrites nothing)
    <run_id>.migrated.json              written last: {"records": ref, "source": ..., "versions": {...}}

Which records a legacy run read, per partition it names:

* the version an artifact manifest pinned for that run (``dp.ledger_key`` is the entry's key): exact;
* otherwise every version of the partition committed before the run reserved (the run read the
  newest one then; the union can only over-charge);
* a partition with no curated versions (a forecaster's series interval) becomes one pseudo-record
  named by the partition, so its charge is kept.

The entry's mechanism is untouched: migration only says *who* was charged, never removes a charge.
Idempotent: an entry with a record set or a ``.migrated.json`` is left as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from pipelines.artifacts import list_artifacts, read_artifact_manifest
from pipelines.privacy.config import PrivacyConfig
from pipelines.privacy.ledger_store import (
    MIGRATED_SUFFIX,
    LedgerRecord,
    dump_object,
    entry_key,
    ledger_folder,
    now_stamp,
    read_ledger,
)
from pipelines.privacy.record_store import record_ref, write_record_object
from pipelines.privacy.records import RecordSet
from pipelines.publish import COMMITS, partition_prefix, read_version_rows
from pipelines.storage import ObjectStore

# committed_at is written at one-second precision, created_at at milliseconds: a commit in the same
# second as the reservation may have come first, so it is included (over-charging is the safe side).
_CLOCK_SLACK = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class MigrationStep:
    """What migration did (or would do) to one ledger entry."""

    run_id: str
    action: str  # "migrated", "would migrate", "already migrated", "current format"
    records: int = 0
    source: str = ""
    versions: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "action": self.action, "records": self.records, "source": self.source,
                "versions": self.versions}


def partition_record(domain: str, interval: str) -> bytes:
    """The pseudo-record of a partition that has no curated records (a forecaster's series interval)."""
    return hashlib.sha256(f"partition\x00{domain}\x00{interval}".encode()).digest()


def _row_digest(row: dict) -> str | bytes:
    value = row.get("content_sha256")
    return value if value else hashlib.sha256(f"id\x00{row.get('id')}".encode()).digest()


def _when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _commits(store: ObjectStore, prefix: str) -> list[dict]:
    return [json.loads(store.get(o.key)) for o in store.list(f"{prefix}/{COMMITS}/") if o.key.endswith(".json")]


def _pinned_versions(store: ObjectStore, *, config: PrivacyConfig, domain: str,
                     artifacts_prefix: str) -> dict[str, dict[str, str]]:
    """Ledger key -> {interval: version} from every artifact manifest of ``domain`` (what its run read)."""
    out: dict[str, dict[str, str]] = {}
    for ref in list_artifacts(store, domain, prefix=artifacts_prefix):
        manifest = read_artifact_manifest(store, ref)
        key = (manifest.get("dp") or {}).get("ledger_key")
        parts = (manifest.get("data") or {}).get("partitions") or []
        if key:
            out[str(key)] = {str(p.get("interval")): str(p.get("version")) for p in parts if p.get("version")}
    return out


def legacy_record_set(store: ObjectStore, record: LedgerRecord, *, curated_prefix: str, data_domain: str,
                      pinned: dict[str, str], series: bool = False) -> tuple[RecordSet, str, dict[str, list[str]]]:
    """The records a legacy entry's run read: ``(record set, how it was found, versions per interval)``.

    ``series``: a forecaster slot's run read each interval's series, not its curated rows: one pseudo-record per
    interval (what ``pipelines.finetune`` charges such runs now), even where the interval has curated versions.
    """
    created = _when(record.entry.created_at)
    digests: list[str | bytes] = []
    versions: dict[str, list[str]] = {}
    sources = set()
    for interval in record.entry.partitions:
        prefix = partition_prefix(curated_prefix, data_domain, interval)
        commits = [] if series else _commits(store, prefix)
        if not commits:
            digests.append(partition_record(data_domain, interval))
            versions[interval] = []
            sources.add("partition pseudo-record")
            continue
        if interval in pinned:
            chosen = [pinned[interval]]
            sources.add("artifact manifest")
        else:
            before = [c["version"] for c in commits if _when(c.get("committed_at", "")) <= created + _CLOCK_SLACK]
            chosen = sorted(set(before or [c["version"] for c in commits]))
            sources.add("versions committed before the run" if before else "every version (none before the run)")
        versions[interval] = chosen
        for version in chosen:
            digests += [_row_digest(r) for r in read_version_rows(store, prefix, version)]
    return RecordSet.of(digests), ", ".join(sorted(sources)), versions


def migrate_ledger(*, config: PrivacyConfig, store: ObjectStore, domain: str, curated_prefix: str,
                   artifacts_prefix: str, data_domain: str | None = None, dry_run: bool = False) -> list[MigrationStep]:
    """Give every legacy entry of ``domain`` the record set its run read (see the module docstring).

    Args:
        config: the domain's privacy settings (ledger prefix).
        store: the object store.
        domain: the ledger's domain (a forecaster slot has its own ledger).
        curated_prefix: ``storage.curated_prefix``.
        artifacts_prefix: ``ArtifactsConfig.prefix``.
        data_domain: the domain whose curated partitions the runs read (default ``domain``).
        dry_run: compute and report, write nothing.

    Returns:
        One step per entry, oldest first.
    """
    data_domain = data_domain or domain
    folder = ledger_folder(config=config, domain=domain)
    pinned = _pinned_versions(store, config=config, domain=domain, artifacts_prefix=artifacts_prefix)
    steps = []
    for record in read_ledger(config=config, store=store, domain=domain):
        run_id = record.entry.run_id
        if record.entry.records is not None:
            steps.append(MigrationStep(run_id, "current format", record.entry.records.get("count", 0)))
            continue
        if record.migrated is not None:
            ref = record.migrated.get("records") or {}
            steps.append(MigrationStep(run_id, "already migrated", ref.get("count", 0),
                                       record.migrated.get("source", ""), record.migrated.get("versions", {})))
            continue
        key = entry_key(config=config, domain=domain, run_id=run_id)
        records, source, versions = legacy_record_set(store, record, curated_prefix=curated_prefix,
                                                      data_domain=data_domain, pinned=pinned.get(key, {}),
                                                      series=data_domain != domain)
        if dry_run:
            steps.append(MigrationStep(run_id, "would migrate", len(records), source, versions))
            continue
        ref = record_ref(f"{run_id}.migrated-{records.sha256[:16]}", records, suffix=".records")
        write_record_object(store, folder=folder, ref=ref, value=records)
        body = {"run_id": run_id, "records": ref, "source": source, "versions": versions, "migrated_at": now_stamp()}
        if not store.put(key[: -len(".json")] + MIGRATED_SUFFIX, dump_object(body), if_none_match=True):
            existing = json.loads(store.get(key[: -len(".json")] + MIGRATED_SUFFIX))  # a concurrent migrate won
            steps.append(MigrationStep(run_id, "already migrated", (existing.get("records") or {}).get("count", 0),
                                       existing.get("source", ""), existing.get("versions", {})))
            continue
        steps.append(MigrationStep(run_id, "migrated", len(records), source, versions))
    return steps
