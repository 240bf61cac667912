"""The privacy ledger's objects: their layout, the entry format, and reading them back.

Layout under ``<ledger_prefix>/<domain>/`` (every object written once with ``if_none_match``)::

    <run_id>.json            the reservation: planned (q, sigma, steps), partitions read, the run's own ε
    <run_id>.decision.json   {"decision": "granted" | "void"}: the run may train / never will
    <run_id>.done.json       after training: actual steps and the ε the training accountant reported
    <run_id>.records         the sorted content digests the run reads (written before the entry; record_store)
    <run_id>.subjects        optional (record, subject) digests of those records
    <run_id>.migrated.json   a legacy (per-partition) entry's record set, added by ``privacy migrate``

The unit of account is the record (content hash), not the partition: an entry with a record set is
charged to exactly those records (``record_runs``). Entries without one (written before record sets
existed) must be migrated before a per-record plan can be checked; partition-level plans keep working on them.

This module names and reads the objects; planning, reserving and deciding a run is :mod:`pipelines.privacy.ledger`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pipelines.privacy.accounting import Charge
from pipelines.privacy.config import KINDS, PrivacyConfig
from pipelines.privacy.record_accounting import RecordRun
from pipelines.privacy.record_store import RECORDS_SUFFIX, SUBJECTS_SUFFIX, RecordSetError, read_record_object
from pipelines.privacy.records import RecordSet, SubjectMap
from pipelines.storage import NotFound, ObjectStore

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,199}$")
DECISION_SUFFIX = ".decision.json"
DONE_SUFFIX = ".done.json"
MIGRATED_SUFFIX = ".migrated.json"
_RESERVED_SUFFIXES = (".done", ".decision", ".migrated", RECORDS_SUFFIX, SUBJECTS_SUFFIX)


class LedgerError(RuntimeError):
    """The ledger holds something this code cannot account for (conflicting or unreadable entries)."""


def now_stamp() -> str:
    """The current UTC time as ledger objects record it (ISO-8601 with milliseconds and ``Z``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump_object(value: dict) -> bytes:
    """The bytes of a ledger JSON object (sorted keys: a retried write is byte-identical)."""
    return (json.dumps(value, sort_keys=True, indent=1) + "\n").encode("utf-8")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can name ledger objects (Airflow run ids can), else raise ValueError."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or run_id.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"run_id {run_id!r}: use 1-200 characters from A-Z a-z 0-9 _ . : + - (not ending in "
                         f"{'/'.join(_RESERVED_SUFFIXES)}), e.g. the Airflow run id")
    return run_id


def ledger_folder(*, config: PrivacyConfig, domain: str) -> str:
    """The prefix that holds a domain's ledger objects (ends with '/')."""
    return f"{config.ledger_prefix}/{domain}/"


def entry_key(*, config: PrivacyConfig, domain: str, run_id: str) -> str:
    """The object key of a run's ledger entry (what an artifact's ``dp.ledger_key`` names)."""
    return f"{ledger_folder(config=config, domain=domain)}{check_run_id(run_id)}.json"


@dataclass(frozen=True)
class LedgerEntry:
    """One DP run's reservation, as written to ``<run_id>.json`` (never changed afterwards)."""

    run_id: str
    domain: str
    kind: str
    partitions: tuple[str, ...]
    epsilon: float
    delta: float
    sample_rate: float
    noise_multiplier: float
    steps: int
    accountant: str
    max_grad_norm: float
    secure_mode: bool
    created_at: str
    created_by: str = ""
    status: str = "reserved"
    # {"object", "count", "sha256"} of the run's record set / subject map (record_store); None: a legacy entry.
    records: dict | None = None
    subjects: dict | None = None
    # When the run recorded subjects: the worst subject's ε once this run is included (as planned).
    subject_epsilon: float | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["partitions"] = list(self.partitions)
        return out

    @classmethod
    def from_json(cls, data: dict, *, key: str = "") -> LedgerEntry:
        try:
            fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
            fields["partitions"] = tuple(fields["partitions"])
            entry = cls(**fields)
        except (KeyError, TypeError) as exc:
            raise LedgerError(f"ledger entry {key or data!r} is malformed ({exc}): it cannot be accounted; "
                              "fix or re-create it by hand") from None
        if entry.kind not in KINDS or entry.steps < 1 or entry.noise_multiplier <= 0 or not 0 < entry.sample_rate <= 1:
            raise LedgerError(f"ledger entry {key} has invalid kind/steps/noise/sample rate: {data}")
        return entry


@dataclass(frozen=True)
class LedgerRecord:
    """An entry with its decision and completion objects, if any."""

    entry: LedgerEntry
    decision: dict | None = None
    done: dict | None = None
    migrated: dict | None = None

    @property
    def records_ref(self) -> dict | None:
        """Where the run's record set is: named by the entry, or by ``privacy migrate`` for a legacy entry."""
        return self.entry.records or (self.migrated or {}).get("records")

    @property
    def subjects_ref(self) -> dict | None:
        return self.entry.subjects or (self.migrated or {}).get("subjects")

    @property
    def status(self) -> str:
        """``void`` (never trains, not counted), ``completed``, ``granted`` (training) or ``reserved`` (no decision)."""
        if self.decision and self.decision.get("decision") == "void":
            return "void"
        if self.done:
            return "completed"
        if self.decision and self.decision.get("decision") == "granted":
            return "granted"
        return "reserved"

    @property
    def counted(self) -> bool:
        return self.status != "void"

    @property
    def counted_steps(self) -> int:
        actual = int(self.done.get("steps", 0)) if self.done else 0
        return max(self.entry.steps, actual)

    def charge(self) -> Charge:
        e = self.entry
        return Charge(run_id=e.run_id, kind=e.kind, partitions=e.partitions,
                      mechanism=(e.noise_multiplier, e.sample_rate, self.counted_steps))


def read_ledger(*, config: PrivacyConfig, store: ObjectStore, domain: str) -> list[LedgerRecord]:
    """Every entry of a domain with its decision and completion, oldest first.

    Raises:
        LedgerError: an object cannot be parsed (it is never skipped: that could under-count).
    """
    folder = ledger_folder(config=config, domain=domain)
    entries: dict[str, LedgerEntry] = {}
    sidecars: dict[tuple[str, str], dict] = {}
    for info in store.list(folder):
        name = info.key[len(folder):]
        if "/" in name or not name.endswith(".json"):
            continue
        try:
            data = json.loads(store.get(info.key))
        except NotFound:
            continue
        except ValueError as exc:
            raise LedgerError(f"ledger object {store.uri(info.key)} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise LedgerError(f"ledger object {store.uri(info.key)} is not a JSON object")
        if name.endswith(DECISION_SUFFIX):
            sidecars[(name[: -len(DECISION_SUFFIX)], "decision")] = data
        elif name.endswith(DONE_SUFFIX):
            sidecars[(name[: -len(DONE_SUFFIX)], "done")] = data
        elif name.endswith(MIGRATED_SUFFIX):
            sidecars[(name[: -len(MIGRATED_SUFFIX)], "migrated")] = data
        else:
            entry = LedgerEntry.from_json(data, key=info.key)
            if entry.run_id != name[: -len(".json")] or entry.domain != domain:
                raise LedgerError(f"ledger entry {info.key} names run {entry.run_id!r} of domain {entry.domain!r}")
            entries[entry.run_id] = entry
    records = [LedgerRecord(entry=e, decision=sidecars.get((r, "decision")), done=sidecars.get((r, "done")),
                            migrated=sidecars.get((r, "migrated"))) for r, e in entries.items()]
    return sorted(records, key=lambda rec: (rec.entry.created_at, rec.entry.run_id))


def record_runs(*, config: PrivacyConfig, store: ObjectStore, domain: str, records: Sequence[LedgerRecord],
                exclude_run: str | None = None) -> list[RecordRun]:
    """Every counted run of ``records`` with the record set it read (for per-record accounting).

    Raises:
        LedgerError: a counted entry has no record set (a legacy entry: run ``privacy migrate``), or its
            record set is missing or does not match the entry.
    """
    folder = ledger_folder(config=config, domain=domain)
    out = []
    for rec in records:
        if not rec.counted or rec.entry.run_id == exclude_run:
            continue
        ref = rec.records_ref
        if ref is None:
            raise LedgerError(f"ledger entry {rec.entry.run_id} of {domain} is charged per partition (legacy format): "
                              f"upgrade the ledger first with `python -m pipelines privacy migrate --domain {domain}`")
        try:
            record_set = read_record_object(store, folder=folder, ref=ref, kind=RecordSet)
            subjects_ref = rec.subjects_ref
            subjects = (read_record_object(store, folder=folder, ref=subjects_ref, kind=SubjectMap)
                        if subjects_ref else None)
        except RecordSetError as exc:
            raise LedgerError(str(exc)) from None
        out.append(RecordRun(run_id=rec.entry.run_id, kind=rec.entry.kind, records=record_set, subjects=subjects,
                             mechanism=(rec.entry.noise_multiplier, rec.entry.sample_rate, rec.counted_steps)))
    return out
