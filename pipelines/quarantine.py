"""Quarantine inspection and release: what ``python -m pipelines ops quarantine ...`` and the console call.

Nothing here bypasses governance: a released record goes back to *landing* as a new create-only file,
and the next run of its interval takes it through every step again (parse, schema, cleaning, PII
masking, sensitive words, dedup, labelling, validation), exactly like any other input. Releases asked
for by someone who may not write landing/ (the operations console) are requests that ingestion
executes: ``pipelines.release_requests``.

Quarantine layout (written by ``pipelines.weekly.publish_partition``)::

    quarantine/<domain>/<interval>/v-<version>/quarantine.jsonl    one rejection a line:
        {"source_uri": "landing/<domain>/<date>/<file>#L<line>", "stage", "reason", "detail", "raw"}
    quarantine/<domain>/<interval>/validation-failed-<run>.json    a failed suite's report (not published)
    quarantine/feedback/<interval>/unrouted.jsonl                   feedback that reached no domain
    quarantine/<domain>/<interval>/released/<id>.json              written here: one create-only marker per release

The version read is the one the partition's newest commit names. A quarantined entry's id is the first
12 hex digits of the sha256 of its ``source_uri`` (stable across versions and reruns); the
``source_uri`` itself is accepted too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.ingest.parse import is_record
from pipelines.partition import Interval
from pipelines.storage import NotFound, ObjectStore

log = logging.getLogger("pipelines.quarantine")

FEEDBACK = "feedback"
RELEASED = "released"
RELEASE_ACTION = "quarantine_release"


class OpsError(ValueError):
    """An on-call request names something that does not exist or cannot be done; the message says what to do."""


@dataclass(frozen=True)
class QuarantinedRecord:
    """One quarantined record (or whole file) with the rule that rejected it."""

    id: str
    source_uri: str
    stage: str
    reason: str
    detail: str
    raw: str | None
    released: str | None = None  # the landing key it was released to, if it was
    kind: str = ""  # "file" or "record" as quarantined (a file name may hold "#"); empty: read from the URI

    @property
    def is_file(self) -> bool:
        return not is_record({"source_uri": self.source_uri, "kind": self.kind})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "file" if self.is_file else "record"}


@dataclass(frozen=True)
class QuarantineSet:
    """What one partition has in quarantine: the version read and its entries."""

    domain: str
    interval: str
    version: str | None
    key: str
    records: tuple[QuarantinedRecord, ...]
    validation_reports: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.records).items()))

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "interval": self.interval, "version": self.version, "quarantine": self.key,
                "total": len(self.records), "by_reason": self.counts(),
                "released": sum(1 for r in self.records if r.released),
                "validation_reports": list(self.validation_reports),
                "records": [r.to_dict() for r in self.records]}


@dataclass(frozen=True)
class ReleaseResult:
    """What a release wrote: new landing files, one marker per record, and the audit entry."""

    domain: str
    interval: str
    released: tuple[dict[str, Any], ...]
    landing_files: tuple[str, ...]
    audit_key: str
    next_step: str

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "interval": self.interval, "released": list(self.released),
                "landing_files": list(self.landing_files), "audit": self.audit_key, "next_step": self.next_step}


def rerun_command(domain: str, interval: str) -> str:
    """The command that ingests a partition now, releases included (feedback: the domain it belongs to)."""
    target = domain if domain != FEEDBACK else "<domain>"
    return f"python -m pipelines ops rerun --domain {target} --interval {interval}"


def quarantine_id(source_uri: str) -> str:
    """The short, stable id of a quarantined entry (12 hex digits of the sha256 of its source URI)."""
    return hashlib.sha256(source_uri.encode("utf-8")).hexdigest()[:12]


def _interval_name(interval: str | Interval) -> str:
    return interval.name if isinstance(interval, Interval) else Interval.parse(interval).name


def _check_domain(config: PipelineConfig, domain: str) -> None:
    if domain != FEEDBACK:
        config.domain(domain)


def _folder(config: PipelineConfig, domain: str, interval: str) -> str:
    return f"{config.storage.quarantine_prefix}/{domain}/{interval}"


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _released_markers(config: PipelineConfig, store: ObjectStore, domain: str, interval: str) -> dict[str, dict]:
    prefix = f"{_folder(config, domain, interval)}/{RELEASED}/"
    return {o.key[len(prefix):-5]: json.loads(store.get(o.key)) for o in store.list(prefix) if o.key.endswith(".json")}


def _quarantine_key(config: PipelineConfig, store: ObjectStore, domain: str, interval: str) -> tuple[str | None, str]:
    """(version, key) of the quarantine file a partition's newest commit names."""
    from pipelines.publish import latest_commit, partition_prefix

    if domain == FEEDBACK:
        return None, f"{_folder(config, domain, interval)}/unrouted.jsonl"
    commit = latest_commit(store, partition_prefix(config.storage.curated_prefix, domain, interval))
    if commit is None:
        return None, ""
    manifest = json.loads(store.get(commit.record["manifest"]))
    return commit.version, manifest["files"]["quarantine"]


def read_quarantine(*, config: PipelineConfig, store: ObjectStore, domain: str,
                    interval: str | Interval) -> QuarantineSet:
    """The quarantined entries of one partition (its newest published version).

    Args:
        config: the pipeline configuration.
        store: the object store.
        domain: a configured domain, or ``feedback`` for feedback that reached no domain.
        interval: ``START_END``.

    Returns:
        The entries in the order the pipeline wrote them, each marked with its release if any.

    Raises:
        OpsError: the partition was never published (and has no failed-validation report either).
        ConfigError: unknown domain.
    """
    _check_domain(config, domain)
    name = _interval_name(interval)
    folder = _folder(config, domain, name)
    reports = tuple(o.key for o in store.list(f"{folder}/validation-failed-") if o.key.endswith(".json"))
    version, key = _quarantine_key(config, store, domain, name)
    try:
        rows = _jsonl(store.get(key)) if key else []
    except NotFound:
        rows, key = [], key if domain != FEEDBACK else ""
    if not key and not reports:
        raise OpsError(f"{domain} {name}: nothing published and no quarantine under {store.uri(folder)}/; "
                       f"list what exists with `python -m pipelines partitions --domain {domain}` "
                       f"(or run it: `python -m pipelines ops rerun --domain {domain} --interval {name}`)")
    markers = _released_markers(config, store, domain, name)
    records = tuple(
        QuarantinedRecord(id=quarantine_id(r["source_uri"]), source_uri=r["source_uri"], stage=r.get("stage", ""),
                          reason=r["reason"], detail=r.get("detail") or "", raw=r.get("raw"),
                          released=(markers.get(quarantine_id(r["source_uri"])) or {}).get("landing_key"),
                          kind=r.get("kind") or "")
        for r in rows
    )
    return QuarantineSet(domain=domain, interval=name, version=version, key=key, records=records,
                         validation_reports=reports)


def quarantine_intervals(*, config: PipelineConfig, store: ObjectStore, domain: str) -> list[str]:
    """Interval names that have a quarantine folder for ``domain`` (published or failed validation)."""
    _check_domain(config, domain)
    prefix = f"{config.storage.quarantine_prefix}/{domain}/"
    return [d[len(prefix):].rstrip("/") for d in store.list_dirs(prefix)]


def list_quarantine(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval | None = None,
                    reason: str | None = None) -> list[QuarantineSet]:
    """Quarantine of one partition, or of every partition of a domain, optionally one reason only.

    Args:
        config: the pipeline configuration.
        store: the object store.
        domain: a configured domain, or ``feedback``.
        interval: one partition (default: all that have a quarantine folder).
        reason: keep only entries with exactly this reason (e.g. ``schema.label.type``).

    Raises:
        OpsError: the named interval does not exist.
    """
    names = [_interval_name(interval)] if interval is not None else \
        quarantine_intervals(config=config, store=store, domain=domain)
    out = []
    for name in names:
        try:
            found = read_quarantine(config=config, store=store, domain=domain, interval=name)
        except OpsError:
            if interval is not None:
                raise
            continue  # a folder holding only release markers or staging leftovers
        if reason is not None:
            found = replace(found, records=tuple(r for r in found.records if r.reason == reason))
        out.append(found)
    return out


def find_quarantined(found: QuarantineSet, record_id: str) -> QuarantinedRecord:
    """The entry of ``found`` with this id (or source URI).

    Raises:
        OpsError: no such entry (the message says how to list them).
    """
    for record in found.records:
        if record_id in (record.id, record.source_uri):
            return record
    raise OpsError(f"{found.domain} {found.interval}: no quarantined entry with id {record_id!r} in "
                   f"{found.key or 'the quarantine'}; list them with `python -m pipelines ops quarantine list "
                   f"--domain {found.domain} --interval {found.interval}`")


def original_record(*, config: PipelineConfig, store: ObjectStore, source_uri: str) -> dict | None:
    """The raw record as it arrived in landing (re-parsed from its file), or None if it cannot be parsed.

    Records rejected by parsing (``invalid_json``...) have no parsed form: they need a corrected record.
    """
    from pipelines.ingest.parse import parse_file

    key, _, line = source_uri.rpartition("#L")
    if not line.isdigit():
        return None
    kind = "feedback" if key.startswith(f"{config.storage.landing_prefix}/{FEEDBACK}/") else "files"
    try:
        data = store.get(key)
    except NotFound:
        return None
    parsed = parse_file(key=key, data=data, kind=kind, encodings=config.ingest.encodings)
    return next((raw for n, raw in parsed.records if n == int(line)), None)


def show_quarantined(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval,
                     record_id: str) -> dict[str, Any]:
    """One quarantined entry, its original record from landing, and its release (if released).

    Raises:
        OpsError: unknown interval or id.
    """
    found = read_quarantine(config=config, store=store, domain=domain, interval=interval)
    record = find_quarantined(found, record_id)
    marker = _released_markers(config, store, domain, found.interval).get(record.id)
    return {"domain": domain, "interval": found.interval, "version": found.version, "quarantine": found.key,
            "record": record.to_dict(),
            "original": None if record.is_file else original_record(config=config, store=store,
                                                                    source_uri=record.source_uri),
            "release": marker}


def _landing_folder(config: PipelineConfig, source_uri: str, interval: str) -> str:
    """``<landing>/<source folder>/<arrival date>`` of the original record; must fall in the interval."""
    from pipelines.partition import arrival_date_of

    key = source_uri.rpartition("#L")[0] or source_uri
    landing = config.storage.landing_prefix
    rest = key[len(landing) + 1:] if key.startswith(f"{landing}/") else ""
    source_folder = rest.split("/", 1)[0]
    day = arrival_date_of(key, f"{landing}/{source_folder}") if source_folder else None
    if day is None or not Interval.parse(interval).contains(day):
        raise OpsError(f"{source_uri}: not a landing record of {interval} (expected "
                       f"{landing}/<source>/<YYYY-MM-DD>/<file>#L<line>)")
    return f"{landing}/{source_folder}/{day.isoformat()}"


def release_quarantined(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval,
                        ids: Sequence[str], why: str, who: str, corrected: Mapping[str, Any] | None = None,
                        audit_prefix: str = "audit", release_id: str | None = None) -> ReleaseResult:
    """Send quarantined records back through the pipeline: write them to landing, mark them, audit it.

    Each record goes to a new create-only file ``<landing>/<source>/<arrival date>/released-<uuid>.jsonl``
    (the same source folder and arrival date as the original, hence the same interval), so the next run of
    the interval ingests it through every governance step again. The original landing file is never changed.

    Args:
        config: the pipeline configuration.
        store: the object store.
        domain: the partition's domain (or ``feedback``).
        interval: ``START_END``.
        ids: quarantine ids (or source URIs) to release.
        why: the reason (kept in the markers and the audit log).
        who: who released them.
        corrected: the fixed record to land instead of the original (only with exactly one id).
        audit_prefix: ``security.audit_prefix``.
        release_id: names the landing files ``released-<release_id>.jsonl`` instead of a fresh uuid, so that
            executing a release request again after a crash finds the file it wrote (the same bytes: it goes
            on) instead of landing the records twice (``pipelines.release_requests``).

    Returns:
        The new landing keys, the released entries and the audit entry's key.

    Raises:
        OpsError: unknown id, a whole-file rejection, an entry already released, an original that cannot be
            parsed and no correction, or a correction that is not a JSON object.
    """
    from pipelines.security.audit import write_audit

    for name, value in (("why", why), ("who", who)):
        if not isinstance(value, str) or not value.strip():
            raise OpsError(f"release: --{name} is empty; say {name} (it goes to the audit log)")
    if not ids:
        raise OpsError("release: name at least one --id (see `ops quarantine list`)")
    if corrected is not None:
        if len(ids) != 1:
            raise OpsError(f"release: a corrected record (--from-file) goes with exactly one --id, got {len(ids)}")
        if not isinstance(corrected, Mapping):
            raise OpsError("release: the corrected record must be one JSON object, e.g. {\"id\": ..., \"text\": ...}")
    found = read_quarantine(config=config, store=store, domain=domain, interval=interval)
    markers = _released_markers(config, store, domain, found.interval)
    chosen: list[QuarantinedRecord] = []
    for record_id in dict.fromkeys(ids):
        record = find_quarantined(found, record_id)
        if record.is_file:
            raise OpsError(f"{record.id} is a whole file rejected by {record.reason} ({record.source_uri}): land a "
                           "fixed copy of the file under a new name instead")
        if record.id in markers:
            m = markers[record.id]
            raise OpsError(f"{record.id} was already released to {m['landing_key']} by {m['who']} at {m['when']}; "
                           "if that copy was quarantined again, release the new entry after the rerun")
        chosen.append(record)

    by_folder: dict[str, list[tuple[QuarantinedRecord, dict, bool]]] = {}
    for record in chosen:
        if corrected is not None:
            body, fixed = dict(corrected), True
        else:
            body = original_record(config=config, store=store, source_uri=record.source_uri)
            fixed = False
            if body is None:
                raise OpsError(f"{record.id} ({record.reason}) has no parseable original in landing: give the "
                               "corrected record with --from-file FILE.json")
        folder = _landing_folder(config, record.source_uri, found.interval)
        by_folder.setdefault(folder, []).append((record, body, fixed))

    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    landing_files, released = [], []
    for folder, items in sorted(by_folder.items()):
        key = f"{folder}/released-{release_id or uuid.uuid4().hex}.jsonl"
        data = "".join(json.dumps(body, ensure_ascii=False, sort_keys=True) + "\n" for _r, body, _f in items)
        if not store.put(key, data.encode("utf-8"), if_none_match=True) and \
                (release_id is None or store.get(key) != data.encode("utf-8")):
            raise OpsError(f"{key} exists already with other records; retry the release")
        landing_files.append(key)
        for line, (record, _body, fixed) in enumerate(items, start=1):
            released.append({"id": record.id, "source_uri": record.source_uri, "reason": record.reason,
                             "landing_key": key, "landing_uri": f"{key}#L{line}", "corrected": fixed})
    audit_key = write_audit(store, action=RELEASE_ACTION, who=who, why=why,
                            what=f"quarantine {domain} {found.interval}",
                            details={"version": found.version, "records": released}, prefix=audit_prefix)
    for item in released:
        marker = {**item, "who": who, "why": why, "when": now, "audit": audit_key}
        # Create-only: of two on-call engineers releasing the same entry at once, the second is told.
        if not store.put(f"{_folder(config, domain, found.interval)}/{RELEASED}/{item['id']}.json",
                         json.dumps(marker, sort_keys=True, ensure_ascii=False).encode("utf-8"), if_none_match=True):
            log.warning("release marker of %s already existed (concurrent release)", item["id"])
    return ReleaseResult(domain=domain, interval=found.interval, released=tuple(released),
                         landing_files=tuple(landing_files), audit_key=audit_key,
                         next_step=rerun_command(domain, found.interval))
