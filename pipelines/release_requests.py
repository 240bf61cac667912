"""Quarantine releases asked for by someone who may not write landing/: a request now, ingestion executes it.

The operations console's S3 identity writes only ``models/``, ``review/`` and ``audit/``
(``pipelines.identities``); it must never write ``landing/`` (that would let the UI forge raw input). A
release from the console is therefore a create-only *request*; the next ingestion of the partition, as the
``ingestion`` identity, executes it through ``pipelines.quarantine.release_quarantined`` (the very function
``ops quarantine release`` calls) **before** it lists landing, so that the same run ingests the released
records through every governance step::

    review/releases/<domain>/<interval>/<request>.json           the request (the console, create-only)
        {"request_id", "domain", "interval", "ids", "why", "who", "requested_at", "corrected"}
    review/releases/<domain>/<interval>/<request>.outcome.json   its outcome (ingestion, create-only)
        {"state": "done", "landing_files", "audit", "released", ...} or {"state": "failed", "error", ...}

A request without an outcome is *pending*. Executing is idempotent: a request with an outcome is skipped,
and its landing files are named after the request (``released-<request>.jsonl``), so an execution cut
short and run again finds what it wrote instead of landing the records twice. A bad request (an entry
released meanwhile, a malformed file) gets a ``failed`` outcome with the reason; the partition still runs.
``feedback`` requests are executed where feedback is routed (``route_feedback``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.partition import Interval
from pipelines.quarantine import (
    OpsError, find_quarantined, original_record, read_quarantine, release_quarantined, rerun_command,
)
from pipelines.security.audit import write_audit
from pipelines.storage import ObjectStore

log = logging.getLogger("pipelines.release_requests")

REQUEST_ACTION = "quarantine_release_request"
PENDING, DONE, FAILED = "pending", "done", "failed"
OUTCOME = ".outcome.json"
PURGED = "[purged]"  # a corrected record erased by pipelines.security.purge
MAX_REQUEST_BYTES = 1 << 20  # a request is a few ids and at most one corrected record
_REQUEST_NAME = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ReleaseRequest:
    """One release request and, once ingestion executed it, its outcome."""

    request_id: str
    domain: str
    interval: str
    ids: tuple[str, ...]
    why: str
    who: str
    requested_at: str
    key: str
    corrected: Mapping[str, Any] | None = None
    outcome: Mapping[str, Any] | None = None
    problem: str = ""  # why the stored file is not a well-formed request (it fails when executed)

    @property
    def state(self) -> str:
        return PENDING if self.outcome is None else str(self.outcome.get("state", FAILED))

    @property
    def next_step(self) -> str:
        """What the person who asked does next: rerun the partition (pending), nothing (done), ask again (failed)."""
        if self.state == PENDING:
            return rerun_command(self.domain, self.interval)
        if self.state == DONE:
            return f"nothing: run {self.outcome.get('executed_by')} released and ingested it"
        return "fix what the error says and release again (a new request)"

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "ids": list(self.ids), "state": self.state, "next_step": self.next_step}
        out["corrected"] = dict(self.corrected) if self.corrected is not None else None
        out["outcome"] = dict(self.outcome) if self.outcome is not None else None
        return out


def requests_prefix(domain: str, interval: str | None = None, *, prefix: str = "review") -> str:
    """``<review>/releases/<domain>/[<interval>/]``: where a partition's (or a domain's) requests live."""
    return f"{prefix}/releases/{domain}/" + (f"{interval}/" if interval else "")


def _interval_name(interval: str | Interval) -> str:
    return interval.name if isinstance(interval, Interval) else Interval.parse(interval).name


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def request_release(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval,
                    ids: Sequence[str], why: str, who: str, corrected: Mapping[str, Any] | None = None,
                    review_prefix: str = "review") -> ReleaseRequest:
    """Ask ingestion to release quarantined records: a create-only request plus a ``quarantine_release_request``
    audit entry. Checks now what can be checked by reading (so the person hears at once), the rest at execution.

    Args:
        config: the pipeline configuration.
        store: a store that may write ``review/`` and ``audit/`` (the console's).
        domain: the partition's domain (or ``feedback``).
        interval: ``START_END``.
        ids: quarantine ids to release.
        why: the reason (request, audit entry, and the release's markers and audit entry).
        who: who asks (``console:<user>``); the release is audited as theirs.
        corrected: the fixed record to land instead of the original (exactly one id).
        review_prefix: the review prefix.

    Raises:
        OpsError: no reason, no id, an unknown id, a whole-file rejection, an entry already released or
            already in a pending request, an original that cannot be parsed and no correction.
    """
    for name, value in (("why", why), ("who", who)):
        if not isinstance(value, str) or not value.strip():
            raise OpsError(f"release request: {name} is empty; say {name} (it goes to the audit log)")
    if not ids:
        raise OpsError("release request: name at least one quarantined id")
    if corrected is not None and (len(ids) != 1 or not isinstance(corrected, Mapping)):
        raise OpsError("release request: a corrected record is one JSON object and goes with exactly one id")
    found = read_quarantine(config=config, store=store, domain=domain, interval=interval)
    pending = {i: r for r in list_release_requests(store=store, domain=domain, interval=found.interval,
                                                   prefix=review_prefix) if r.state == PENDING for i in r.ids}
    chosen = []
    for record_id in dict.fromkeys(ids):
        record = find_quarantined(found, record_id)
        if record.is_file:
            raise OpsError(f"{record.id} is a whole file rejected by {record.reason}: land a fixed copy of the "
                           "file under a new name instead")
        if record.released:
            raise OpsError(f"{record.id} was already released to {record.released}")
        if record.id in pending:
            raise OpsError(f"{record.id} is already in a pending request by {pending[record.id].who} "
                           f"({pending[record.id].requested_at}); next: {rerun_command(domain, found.interval)}")
        if corrected is None and original_record(config=config, store=store, source_uri=record.source_uri) is None:
            raise OpsError(f"{record.id} ({record.reason}) has no parseable original in landing: give the "
                           "corrected record")
        chosen.append(record.id)
    request_id = uuid.uuid4().hex
    key = f"{requests_prefix(domain, found.interval, prefix=review_prefix)}{request_id}.json"
    request = ReleaseRequest(request_id=request_id, domain=domain, interval=found.interval, ids=tuple(chosen),
                             why=why.strip(), who=who, requested_at=_now(), key=key,
                             corrected=dict(corrected) if corrected is not None else None)
    body = {"request_id": request_id, "domain": domain, "interval": found.interval, "ids": list(chosen),
            "why": request.why, "who": who, "requested_at": request.requested_at, "corrected": request.corrected}
    if not store.put(key, json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"), if_none_match=True):
        raise OpsError(f"{key} exists already (uuid clash?); ask again")
    write_audit(store, action=REQUEST_ACTION, who=who, why=request.why, what=f"quarantine {domain} {found.interval}",
                details={"request": key, "ids": list(chosen), "corrected": corrected is not None},
                prefix=config.security.audit_prefix)
    return request


def _parse_request(key: str, data: bytes, *, domain: str, interval: str) -> ReleaseRequest:
    """A stored request; the domain, interval and id come from its key, never from its body.

    Raises:
        ValueError: not a request (the message says what is wrong).
    """
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    ids, corrected = body.get("ids"), body.get("corrected")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError("ids must be a non-empty list of strings")
    if corrected is not None and corrected != PURGED and not isinstance(corrected, dict):
        raise ValueError("corrected must be a JSON object")
    fields = {k: body.get(k) for k in ("why", "who", "requested_at")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise ValueError("why, who and requested_at must be strings")
    purged = corrected == PURGED
    return ReleaseRequest(request_id=key.rsplit("/", 1)[1].removesuffix(".json"), domain=domain, interval=interval,
                          ids=tuple(ids), key=key, corrected=None if purged else corrected,
                          problem="its corrected record was erased (purge): ask again if it is still needed"
                          if purged else "", **fields)


def list_release_requests(*, store: ObjectStore, domain: str, interval: str | Interval | None = None,
                          prefix: str = "review") -> list[ReleaseRequest]:
    """The requests of one partition (or of every partition of a domain), oldest first, each with its outcome.

    A file that is not a well-formed request is listed with its ``problem`` (it fails when executed), never skipped.
    """
    name = _interval_name(interval) if interval is not None else None
    base = requests_prefix(domain, name, prefix=prefix)
    keys = {o.key: o.size for o in store.list(base)}
    out = []
    for key in keys:
        folder, _, file = key.rpartition("/")
        stem = file.removesuffix(".json")
        if file.endswith(OUTCOME) or not file.endswith(".json") or not _REQUEST_NAME.match(stem):
            continue
        part = folder[len(requests_prefix(domain, prefix=prefix)):]
        if "/" in part:
            continue  # not <interval>/<request>.json
        outcome_key = f"{folder}/{stem}{OUTCOME}"
        outcome = json.loads(store.get(outcome_key)) if outcome_key in keys else None
        try:
            if keys[key] > MAX_REQUEST_BYTES:  # never read a huge file into memory
                raise ValueError(f"{keys[key]} bytes > {MAX_REQUEST_BYTES}")
            request = _parse_request(key, store.get(key), domain=domain, interval=part)
        except ValueError as exc:
            request = ReleaseRequest(request_id=stem, domain=domain, interval=part, ids=(), why="", who="",
                                     requested_at="", key=key, problem=str(exc))
        out.append(replace(request, outcome=outcome))
    return sorted(out, key=lambda r: (r.interval, r.requested_at, r.request_id))


def _resumed(config: PipelineConfig, store: ObjectStore, request: ReleaseRequest) -> dict[str, Any] | None:
    """The outcome of a request an earlier execution released completely but did not record, else None."""
    found = read_quarantine(config=config, store=store, domain=request.domain, interval=request.interval)
    landed = {r.id: r.released for r in found.records}
    files = [landed.get(i) for i in request.ids]
    if not all(f and f.endswith(f"/released-{request.request_id}.jsonl") for f in files):
        return None
    return {"state": DONE, "landing_files": sorted(set(files)), "resumed": True}


def _execute(config: PipelineConfig, store: ObjectStore, request: ReleaseRequest) -> dict[str, Any]:
    try:
        resumed = _resumed(config, store, request)
        if resumed is not None:
            return resumed
        result = release_quarantined(config=config, store=store, domain=request.domain, interval=request.interval,
                                     ids=list(request.ids), why=request.why, who=request.who,
                                     corrected=request.corrected, audit_prefix=config.security.audit_prefix,
                                     release_id=request.request_id)
    except OpsError as exc:
        return {"state": FAILED, "error": str(exc)}
    return {"state": DONE, "landing_files": list(result.landing_files), "audit": result.audit_key,
            "released": list(result.released)}


def execute_release_requests(*, config: PipelineConfig, store: ObjectStore, domain: str, interval: str | Interval,
                             run_key: str, review_prefix: str = "review") -> list[ReleaseRequest]:
    """Execute a partition's pending release requests as the calling (ingestion) identity; record each outcome.

    Called by ``ingest_landing`` (and ``route_feedback`` for ``feedback``) before it lists landing. A request
    that cannot be executed is recorded as ``failed`` with the reason and logged; it never stops the run.

    Returns:
        The requests executed by this call, with their outcomes (empty when none was pending).
    """
    name = _interval_name(interval)
    executed = []
    for request in list_release_requests(store=store, domain=domain, interval=name, prefix=review_prefix):
        if request.state != PENDING:
            continue
        outcome = {"state": FAILED, "error": f"not executed: {request.problem}"} if request.problem \
            else _execute(config, store, request)
        outcome.update(request_id=request.request_id, executed_by=run_key, executed_at=_now())
        data = json.dumps(outcome, sort_keys=True, ensure_ascii=False).encode("utf-8")
        if not store.put(request.key.removesuffix(".json") + OUTCOME, data, if_none_match=True):
            log.warning("release request %s: another run recorded its outcome first", request.key)
            continue
        if outcome["state"] == FAILED:
            log.warning("release request %s by %s failed (the partition runs anyway): %s", request.key, request.who,
                        outcome["error"])
        else:
            log.info("release request %s by %s: released to %s", request.key, request.who,
                     ", ".join(outcome["landing_files"]))
        executed.append(replace(request, outcome=outcome))
    return executed
