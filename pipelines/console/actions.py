"""What the console writes, each through the same create-only path as the CLI, as the signed-in user.

- :func:`label_items`: review labels -> the queue's next ``reviews-<n>.jsonl``, exactly as ``review import``;
- :func:`rollback_model`: a rollback record, as ``model rollback``;
- :func:`release_quarantine`: a release *request* under ``review/releases/`` that the next ingestion run of the
  partition executes as ``ops quarantine release`` does (the console may not write ``landing/``);
- :func:`audit_approval`: the audit entry of an approval answered from the console.

Every action checks the user's permission first (:mod:`pipelines.console.access`) and leaves an audit entry whose
``who`` is ``console:<user>``. The store passed in is the console's own (the ``console`` S3 identity).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.artifacts.promotion import PromotionRecord, rollback
from pipelines.config import PipelineConfig
from pipelines.console.access import APPROVE, REVIEW, ConsoleUser
from pipelines.release_requests import ReleaseRequest, request_release
from pipelines.review import ReviewImport, import_review_rows, parse_queue_key
from pipelines.security.audit import audit_hook, write_audit
from pipelines.storage import ObjectStore

REVIEW_ACTION = "review_import"
APPROVAL_ACTION = "promotion_approval"


def _audit_prefix(config: PipelineConfig) -> str:
    return config.security.audit_prefix


def label_items(*, config: PipelineConfig, store: ObjectStore, user: ConsoleUser, queue: str,
                labels: Mapping[str, str], now: dt.datetime | None = None) -> ReviewImport:
    """Store review labels given on the labelling page as the queue's next create-only reviews file.

    Args:
        config: the pipeline configuration.
        store: the console's store.
        user: the signed-in reviewer (recorded as ``console:<name>``).
        queue: the queue key.
        labels: ``{record id: review label}``.
        now: the ``reviewed_at`` of every label (default: now).

    Raises:
        PermissionError: the user may not review.
        ReviewImportError: an unknown id or a label outside the queue's label set (nothing written).
    """
    user.require(REVIEW, action="label review items")
    domain = parse_queue_key(queue)["domain"]
    config.domain(domain)
    if not labels:
        raise ValueError("no labels given: choose a label for at least one item")
    rows = [(n, {"id": rid, "review_label": label, "reviewer": user.actor, "reviewed_at": ""})
            for n, (rid, label) in enumerate(labels.items(), start=1)]
    result = import_review_rows(store, queue, rows, source=f"console labels of {user.actor}", now=now)
    if result.written:
        write_audit(store, action=REVIEW_ACTION, who=user.actor, what=f"review queue {queue}",
                    why="labelled in the operations console",
                    details={"reviews": result.reviews_key, "reviewed": result.reviewed, "agreed": result.agreed},
                    prefix=_audit_prefix(config))
    return result


def rollback_model(*, config: PipelineConfig, store: ObjectStore, user: ConsoleUser, domain: str, why: str,
                   to_artifact_id: str | None = None) -> PromotionRecord:
    """Put an earlier production model back with a new rollback record (and its audit entry), as the CLI does.

    Raises:
        PermissionError: the user may not roll back (approvers only).
        PromotionRefused: nothing to roll back to, or the target was never production.
    """
    user.require(APPROVE, action=f"roll back the {domain} model")
    config.domain(domain)
    if not why or not why.strip():
        raise ValueError("a rollback needs a reason: say why (it goes to the record and the audit log)")
    return rollback(store, domain, to_artifact_id=to_artifact_id or None, who=user.actor, why=why.strip(),
                    prefix=config.artifacts.prefix,
                    audit=audit_hook(store, prefix=_audit_prefix(config), who=user.actor))


def release_quarantine(*, config: PipelineConfig, store: ObjectStore, user: ConsoleUser, domain: str,
                       interval: str, ids: Sequence[str], why: str,
                       corrected: Mapping[str, Any] | None = None) -> ReleaseRequest:
    """Ask for quarantined records to go back through governance: a create-only release request (audited as
    ``quarantine_release_request``) that the partition's next ingestion run executes, as the ``ingestion``
    identity, exactly as ``ops quarantine release`` (``pipelines.release_requests``).

    Raises:
        PermissionError: the user may not release (reviewers and approvers may).
        OpsError: unknown id, a whole-file rejection, an entry already released or already requested.
    """
    user.require(REVIEW, action=f"release {domain} quarantine")
    return request_release(config=config, store=store, domain=domain, interval=interval, ids=list(ids),
                           why=why, who=user.actor, corrected=corrected)


def require_approver(*, user: ConsoleUser, decision: str) -> None:
    """Fail before answering a promotion approval unless ``user`` approves and ``decision`` is Approve/Reject.

    Raises:
        PermissionError: the user may not approve.
        ValueError: an unknown decision.
    """
    user.require(APPROVE, action="answer a promotion approval")
    if decision not in ("Approve", "Reject"):
        raise ValueError(f"decision={decision!r}: use Approve or Reject")


def audit_approval(*, config: PipelineConfig, store: ObjectStore, user: ConsoleUser, domain: str, decision: str,
                   run: Mapping[str, Any], why: str = "") -> str:
    """The audit entry of a promotion approved or rejected from the console; returns its key.

    Raises:
        PermissionError: the user may not approve.
    """
    require_approver(user=user, decision=decision)
    return write_audit(store, action=APPROVAL_ACTION, who=user.actor, what=f"{domain} promotion approval",
                       why=why.strip() or decision.lower(),
                       details={"decision": decision, **{k: str(v) for k, v in run.items()}},
                       prefix=_audit_prefix(config))
