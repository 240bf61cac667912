"""The production pointer: numbered, create-only promotion and rollback records.

``<prefix>/<domain>/promotions/NNNNNNNN.json``; the newest record is production. Records are never
rewritten: a rollback is a new record pointing at an earlier artifact, so the history is complete.
Two promoters racing for the same number: one create-only put wins, the other re-reads and takes
the next number, so no record is lost or overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.artifacts.gate import TRIVIAL_METRICS, GateDecision, evaluate_gate, gate_metric_for
from pipelines.artifacts.manifest import ArtifactError
from pipelines.artifacts.store import DEFAULT_PREFIX, ArtifactRef, load_ref, read_artifact_manifest, verify_artifact
from pipelines.serialize import canonical_json
from pipelines.storage import ObjectStore

AuditHook = Callable[[dict[str, Any]], None]


class PromotionRefused(ArtifactError):
    """The gate refused the candidate, or the request makes no sense (production is unchanged)."""


class PromotionConflict(ArtifactError):
    """Too many concurrent writers: no free record number after the allowed attempts."""


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion or rollback (the newest one is production)."""

    number: int
    domain: str
    action: str
    artifact_id: str
    version: str
    previous_artifact_id: str | None
    gate: dict[str, Any] = field(default_factory=dict)
    who: str = ""
    when: str = ""
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def promotions_prefix(prefix: str, domain: str) -> str:
    return f"{prefix}/{domain}/promotions/"


def _record_key(prefix: str, domain: str, number: int) -> str:
    return f"{promotions_prefix(prefix, domain)}{number:08d}.json"


def _numbered_keys(store: ObjectStore, prefix: str, domain: str) -> list[tuple[int, str]]:
    out = []
    for obj in store.list(promotions_prefix(prefix, domain)):
        name = obj.key.rsplit("/", 1)[-1]
        if len(name) == 13 and name.endswith(".json") and name[:8].isdigit():
            out.append((int(name[:8]), obj.key))
    return sorted(out)


def _load(store: ObjectStore, key: str) -> PromotionRecord:
    body = json.loads(store.get(key))
    return PromotionRecord(**{k: body.get(k) for k in PromotionRecord.__dataclass_fields__})


def current_production(store: ObjectStore, domain: str, *, prefix: str = DEFAULT_PREFIX) -> PromotionRecord | None:
    """The newest promotion/rollback record of a domain, i.e. what is in production (None: nothing yet)."""
    keys = _numbered_keys(store, prefix, domain)
    return _load(store, keys[-1][1]) if keys else None


def promotion_history(store: ObjectStore, domain: str, *, prefix: str = DEFAULT_PREFIX,
                      limit: int | None = None) -> list[PromotionRecord]:
    """Promotion and rollback records of a domain, newest first (at most ``limit``)."""
    keys = _numbered_keys(store, prefix, domain)[::-1]
    if limit is not None:
        keys = keys[:limit]
    return [_load(store, key) for _, key in keys]


def _now(now: dt.datetime | None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _append(store: ObjectStore, domain: str, *, prefix: str, make: Callable[[PromotionRecord | None], dict[str, Any]],
            max_attempts: int) -> PromotionRecord:
    """Write the next numbered record create-only; on a lost race re-read production and retry."""
    for _ in range(max_attempts):
        latest = current_production(store, domain, prefix=prefix)
        number = latest.number + 1 if latest else 1
        body = dict(make(latest), number=number, domain=domain)
        if store.put(_record_key(prefix, domain, number), canonical_json(body), if_none_match=True):
            return PromotionRecord(**{k: body.get(k) for k in PromotionRecord.__dataclass_fields__})
    raise PromotionConflict(f"{domain}: no free promotion number after {max_attempts} attempts (other writers kept "
                            f"winning under {store.uri(promotions_prefix(prefix, domain))}); retry")


def _audit_event(record: PromotionRecord) -> dict[str, Any]:
    return {"event": f"model.{record.action}", **record.to_dict()}


def promote(
    store: ObjectStore,
    domain: str,
    ref: ArtifactRef,
    *,
    gate: GateDecision,
    who: str,
    why: str,
    prefix: str = DEFAULT_PREFIX,
    audit: AuditHook | None = None,
    max_attempts: int = 10,
    now: dt.datetime | None = None,
) -> PromotionRecord:
    """Make a verified artifact production by appending a promotion record.

    The artifact is verified in the store (every file's sha256) before anything is written. If it
    is already production, nothing is written and the current record is returned (re-running a
    promotion task changes nothing).

    Args:
        store: the object store.
        domain: the domain.
        ref: the candidate (from ``push_artifact`` or ``load_ref``).
        gate: the gate's decision (``evaluate_gate``, or ``force_gate`` when a person overrides it).
        who: the person or DAG run promoting.
        why: the reason, kept in the record.
        prefix: key prefix of model objects.
        audit: called with the record (plus ``"event"``) after it was written.
        max_attempts: record numbers to try when other promoters win the race.
        now: record time (default: now, UTC).

    Returns:
        The record written (or the current one when ``ref`` already is production).

    Raises:
        PromotionRefused: the gate refused, or ``ref`` belongs to another domain.
        ArtifactCorrupt / ArtifactNotFound: the artifact failed verification.
        PromotionConflict: no free record number after ``max_attempts``.
    """
    if ref.domain != domain:
        raise PromotionRefused(f"artifact {ref.artifact_id} belongs to {ref.domain}, not {domain}")
    if not gate.passed:
        raise PromotionRefused(f"{domain}: gate refused {ref.artifact_id} ({gate.reason}); production unchanged")
    if not who or not why:
        raise ValueError("a promotion needs who and why (they go into the record and the audit log)")
    verify_artifact(store, ref)
    current = current_production(store, domain, prefix=prefix)
    if current is not None and current.artifact_id == ref.artifact_id:
        return current

    def make(latest: PromotionRecord | None) -> dict[str, Any]:
        return {"action": "promote", "artifact_id": ref.artifact_id, "version": ref.version,
                "previous_artifact_id": latest.artifact_id if latest else None, "gate": gate.to_dict(),
                "who": who, "when": _now(now), "why": why}

    record = _append(store, domain, prefix=prefix, make=make, max_attempts=max_attempts)
    if audit is not None:
        audit(_audit_event(record))
    return record


def rollback(
    store: ObjectStore,
    domain: str,
    *,
    to_artifact_id: str | None = None,
    who: str,
    why: str,
    prefix: str = DEFAULT_PREFIX,
    audit: AuditHook | None = None,
    max_attempts: int = 10,
    now: dt.datetime | None = None,
) -> PromotionRecord:
    """Put an earlier production artifact back, with a new record (history is never rewritten).

    Args:
        store: the object store.
        domain: the domain.
        to_artifact_id: the artifact to go back to; it must have been production before.
            Default: the newest earlier production artifact that differs from the current one.
        who: the person or process rolling back.
        why: the reason, kept in the record.
        prefix: key prefix of model objects.
        audit: called with the record (plus ``"event"``) after it was written.
        max_attempts: record numbers to try when other writers win the race.
        now: record time (default: now, UTC).

    Returns:
        The rollback record.

    Raises:
        PromotionRefused: nothing to roll back to, or the target was never production.
        ArtifactCorrupt / ArtifactNotFound: the target failed verification.
    """
    if not who or not why:
        raise ValueError("a rollback needs who and why (they go into the record and the audit log)")
    history = promotion_history(store, domain, prefix=prefix)
    if not history:
        raise PromotionRefused(f"{domain} has no production model: nothing to roll back")
    current = history[0]
    if to_artifact_id is None:
        target = next((r.artifact_id for r in history if r.artifact_id != current.artifact_id), None)
        if target is None:
            raise PromotionRefused(f"{domain}: no earlier production artifact than {current.artifact_id} "
                                   "to roll back to")
    else:
        target = to_artifact_id
        if target == current.artifact_id:
            raise PromotionRefused(f"{domain}: {target} already is production")
        if all(r.artifact_id != target for r in history):
            raise PromotionRefused(f"{domain}: {target} was never in production; a rollback only returns to a "
                                   f"model that passed promotion (use `model promote` for a new one)")
    ref = load_ref(store, domain, target, prefix=prefix)
    verify_artifact(store, ref)

    def make(latest: PromotionRecord | None) -> dict[str, Any]:
        return {"action": "rollback", "artifact_id": ref.artifact_id, "version": ref.version,
                "previous_artifact_id": latest.artifact_id if latest else None,
                "gate": {"skipped": "rollback to an artifact that was in production before"},
                "who": who, "when": _now(now), "why": why}

    record = _append(store, domain, prefix=prefix, make=make, max_attempts=max_attempts)
    if audit is not None:
        audit(_audit_event(record))
    return record


def production_ref(store: ObjectStore, domain: str, *, prefix: str = DEFAULT_PREFIX) -> ArtifactRef | None:
    """The ref of the artifact in production (None when nothing is)."""
    record = current_production(store, domain, prefix=prefix)
    return None if record is None else load_ref(store, domain, record.artifact_id, prefix=prefix)


def evaluate_candidate(
    store: ObjectStore,
    domain: str,
    ref: ArtifactRef,
    *,
    max_drop: float,
    metric: str | None = None,
    higher_is_better: bool | None = None,
    prefix: str = DEFAULT_PREFIX,
    margin: float | None = None,
    check_trivial: bool = True,
) -> GateDecision:
    """Run the gate for a stored candidate against its trivial baseline and the domain's production model.

    Production's numbers are taken from the candidate's ``metrics["baseline"]`` when it names the
    current production artifact (``{"artifact_id": ..., "<metric>": ...}``: the training run evaluated
    production on the candidate's held-out split, which is the fair comparison); otherwise from
    production's own manifest (its ``split`` must then match the candidate's, or the gate refuses).

    Args:
        store: the object store.
        domain: the domain.
        ref: the candidate.
        max_drop: allowed relative drop (``ArtifactsConfig.max_drop`` or the domain's override).
        metric: metric to compare; default: the task's (``GATE_METRICS``).
        higher_is_better: direction; default: the task's.
        prefix: key prefix of model objects.
        margin: how much the candidate must beat its trivial baseline (``metrics["trivial"]``) by; default: the
            task's (``TRIVIAL_METRICS``).
        check_trivial: compare with the trivial baseline (``artifacts.trivial_gate``; off only in tests).
    """
    manifest = read_artifact_manifest(store, ref)
    if metric is None or higher_is_better is None:
        task_metric, task_direction = gate_metric_for(manifest["task"])
        metric = metric or task_metric
        higher_is_better = task_direction if higher_is_better is None else higher_is_better
    candidate = manifest.get("metrics") or {}
    record = current_production(store, domain, prefix=prefix)
    production: dict[str, Any] | None = None
    if record is not None:
        baseline = candidate.get("baseline")
        if isinstance(baseline, dict) and baseline.get("artifact_id") == record.artifact_id:
            production = baseline
        else:
            production = read_artifact_manifest(store, load_ref(store, domain, record.artifact_id,
                                                                prefix=prefix)).get("metrics") or {}
    trivial = candidate.get("trivial") if check_trivial and isinstance(candidate.get("trivial"), dict) else None
    trivial_metric, trivial_higher, default_margin = TRIVIAL_METRICS.get(manifest["task"], ("", True, 0.0))
    return evaluate_gate(candidate=candidate, production=production, metric=metric, max_drop=max_drop,
                         higher_is_better=higher_is_better, trivial=trivial, trivial_metric=trivial_metric,
                         trivial_higher_is_better=trivial_higher,
                         margin=default_margin if margin is None else margin)
