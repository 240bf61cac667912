"""What each console page shows, read from the same object-store records the CLI reads (never a copy).

- privacy: ``privacy budget`` / ``privacy ledger`` (pipelines.privacy): spend per partition, the runs, refused
  (void) reservations with their reason, and ε over time;
- models: ``model show|history|list`` (pipelines.artifacts): production, promotion/rollback records, model cards;
- quarantine: ``ops quarantine list`` (pipelines.quarantine): counts by reason per partition, masked samples, and
  the console's release requests with their state (pipelines.release_requests);
- review: the partition queues of pipelines.review with their reviews and the progress toward the required set.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pipelines.artifacts.card import CARD, CURVE, EPSILON, epsilon_svg
from pipelines.artifacts.manifest import parse_version
from pipelines.artifacts.promotion import current_production, promotion_history
from pipelines.artifacts.store import list_artifacts, read_artifact_manifest
from pipelines.config import PipelineConfig
from pipelines.console.mask import mask_for_display
from pipelines.quarantine import FEEDBACK, list_quarantine
from pipelines.pii import PiiMapping
from pipelines.privacy.ledger import read_ledger
from pipelines.privacy.reports import budget_report, spend_history
from pipelines.publish import list_partitions
from pipelines.release_requests import PENDING, ReleaseRequest, list_release_requests
from pipelines.review import load_reviews, meta_key, parse_queue_key, read_queue
from pipelines.review.sampling import LOW_CONFIDENCE
from pipelines.storage import NotFound, ObjectStore

REVIEW_PREFIX = "review"
SAMPLES = 5


def inline_svg(svg: str | None) -> str | None:
    """An SVG document as an element to put inside HTML (without its XML declaration)."""
    if svg is None:
        return None
    svg = svg.strip()
    return svg[svg.index("?>") + 2:].lstrip() if svg.startswith("<?xml") else svg


def domains(config: PipelineConfig) -> list[str]:
    """The configured domains, sorted (every page is per domain)."""
    return sorted(config.domains)


def privacy_page(*, config: PipelineConfig, store: ObjectStore, domain: str) -> dict[str, Any]:
    """A domain's budget, spend per partition (curated ones included), its runs, refusals and ε over time."""
    config.domain(domain)
    pconfig = config.for_domain(domain).require_privacy()
    curated = list_partitions(store, config.storage.curated_prefix, domain)
    spends = budget_report(config=pconfig, store=store, domain=domain, partitions=curated)
    ledger = read_ledger(config=pconfig, store=store, domain=domain)
    history = spend_history(config=pconfig, store=store, domain=domain)
    runs = [{"run_id": r.entry.run_id, "kind": r.entry.kind, "status": r.status, "epsilon": r.entry.epsilon,
             "partitions": list(r.entry.partitions), "created_at": r.entry.created_at,
             "created_by": r.entry.created_by, "steps": r.counted_steps} for r in ledger]
    refused = [{"run_id": r.entry.run_id, "kind": r.entry.kind, "created_at": r.entry.created_at,
                "reason": (r.decision or {}).get("reason", ""), "by": (r.decision or {}).get("by", "")}
               for r in ledger if r.status == "void"]
    return {"domain": domain, "epsilon": pconfig.epsilon, "delta": pconfig.delta, "accountant": pconfig.accountant,
            "partitions": [{**s.as_dict(), "remaining": s.remaining, "over_budget": s.over_budget()} for s in spends],
            "runs": runs, "refused": refused,
            "history": [{"when": w, "run_id": run, "epsilon": e} for w, run, e in history],
            "svg": inline_svg(epsilon_svg([(w, e) for w, _run, e in history], budget=pconfig.epsilon,
                                          title=f"{domain}: worst partition's epsilon over time"))}


def _text(store: ObjectStore, key: str) -> str | None:
    try:
        data = store.get(key)
    except NotFound:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # an encrypted artifact (security.enabled): read it with `model show` on a host with the keyring


def models_page(*, config: PipelineConfig, store: ObjectStore, domain: str) -> dict[str, Any]:
    """Production, the promotion and rollback history (who, when, why, gate numbers) and every artifact."""
    config.domain(domain)
    prefix = config.artifacts.prefix
    production = current_production(store, domain, prefix=prefix)
    history = [r.to_dict() for r in promotion_history(store, domain, prefix=prefix)]
    ever = {r["artifact_id"] for r in history}
    artifacts = []
    # Newest version first (versions are numbered by training; created_at can tie).
    for ref in sorted(list_artifacts(store, domain, prefix=prefix), key=lambda r: parse_version(r.version),
                      reverse=True):
        manifest = read_artifact_manifest(store, ref)
        artifacts.append({"artifact_id": ref.artifact_id, "version": ref.version, "kind": ref.kind,
                          "task": ref.task, "created_at": manifest.get("created_at"),
                          "metrics": {k: v for k, v in (manifest.get("metrics") or {}).items()
                                      if isinstance(v, (int, float)) and not isinstance(v, bool)},
                          "epsilon": (manifest.get("dp") or {}).get("epsilon"),
                          "production": bool(production and production.artifact_id == ref.artifact_id),
                          "was_production": ref.artifact_id in ever})
    return {"domain": domain, "production": production.to_dict() if production else None, "history": history,
            "artifacts": artifacts}


def model_card(*, config: PipelineConfig, store: ObjectStore, domain: str, artifact_id: str) -> dict[str, Any]:
    """An artifact's model card (markdown) and its two plots (SVG text), as stored with the artifact."""
    from pipelines.artifacts.store import load_ref

    ref = load_ref(store, domain, artifact_id, prefix=config.artifacts.prefix)
    return {"domain": domain, "artifact_id": artifact_id, "version": ref.version,
            "card": _text(store, f"{ref.root}/{CARD}"), "training_curve_svg": inline_svg(_text(store, f"{ref.root}/{CURVE}")),
            "epsilon_svg": inline_svg(_text(store, f"{ref.root}/{EPSILON}"))}


def _raw_text(raw: object) -> object:
    """The text of a quarantined record (its raw line is the whole JSON record), else the raw line itself."""
    if isinstance(raw, str) and raw.startswith("{"):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            return value["text"]
    return raw


def _request_row(request: ReleaseRequest) -> dict[str, Any]:
    outcome = request.outcome or {}
    return {"request": request.key, "ids": list(request.ids), "who": request.who, "why": request.why,
            "requested_at": request.requested_at, "state": request.state, "next_step": request.next_step,
            "landing_files": list(outcome.get("landing_files", [])),
            "error": outcome.get("error") or request.problem or None}


def quarantine_page(*, config: PipelineConfig, store: ObjectStore, domain: str,
                    samples: int = SAMPLES) -> dict[str, Any]:
    """Counts by reason per partition, a few sample entries (text masked at render time) and the release
    requests with their state: pending until the partition's next ingestion run executes them, then done or failed."""
    if domain != FEEDBACK:
        config.domain(domain)
    mapping = PiiMapping()
    requests: dict[str, list[ReleaseRequest]] = {}
    for request in list_release_requests(store=store, domain=domain):
        requests.setdefault(request.interval, []).append(request)
    partitions = []
    for found in list_quarantine(config=config, store=store, domain=domain):
        mine = requests.get(found.interval, [])
        pending = {i: r.key for r in mine if r.state == PENDING for i in r.ids}
        shown = [{"id": r.id, "reason": r.reason, "stage": r.stage, "kind": "file" if r.is_file else "record",
                  "detail": mask_for_display(r.detail, mapping=mapping),
                  "text": mask_for_display(_raw_text(r.raw), mapping=mapping), "released": r.released,
                  "requested": pending.get(r.id)}
                 for r in found.records[:samples]]
        partitions.append({"interval": found.interval, "version": found.version, "total": len(found.records),
                           "by_reason": found.counts(), "released": sum(1 for r in found.records if r.released),
                           "samples": shown, "requests": [_request_row(r) for r in mine],
                           "validation_reports": list(found.validation_reports)})
    totals = Counter()
    for p in partitions:
        totals.update(p["by_reason"])
    return {"domain": domain, "partitions": partitions, "by_reason": dict(sorted(totals.items()))}


def review_queues(*, store: ObjectStore, domain: str, prefix: str = REVIEW_PREFIX) -> list[dict[str, Any]]:
    """Every committed queue of a domain, newest interval first, with its progress."""
    out = []
    for info in store.list(f"{prefix}/{domain}/"):
        if info.key.endswith(".meta.json") and "/queue-" in info.key:
            key = info.key.removesuffix(".meta.json") + ".jsonl"
            meta = json.loads(store.get(info.key))
            parts = parse_queue_key(key)
            reviews = load_reviews(store, domain=domain, interval=parts["interval"], prefix=prefix)
            out.append({"queue": key, "interval": parts["interval"], "version": parts["version"],
                        "queued": meta["counts"]["queued"],
                        "reviewed": sum(1 for r in reviews.values() if r.get("queue") == key)})
    return sorted(out, key=lambda q: (q["interval"], q["version"]), reverse=True)


def review_progress(items: list[dict[str, Any]], reviewed_ids: set[str]) -> dict[str, Any]:
    """Progress toward a partition's required set, which is its queue: ``build_queue`` selects every
    low-confidence prediction plus seeded samples up to ``ceil(share * n)`` (``governance.label``).

    Args:
        items: the queue's lines.
        reviewed_ids: ids with a review of this queue.
    """
    low = [i for i in items if i.get("reason") == LOW_CONFIDENCE]
    done = sum(1 for i in items if str(i["id"]) in reviewed_ids)
    low_done = sum(1 for i in low if str(i["id"]) in reviewed_ids)
    return {"required": len(items), "reviewed": done, "low_confidence": len(low),
            "low_confidence_reviewed": low_done, "sampled": len(items) - len(low),
            "complete": done == len(items)}


def review_page(*, config: PipelineConfig, store: ObjectStore, queue: str, prefix: str = REVIEW_PREFIX) -> dict[str, Any]:
    """A queue as a labelling page: each item's text, prediction, confidence and review so far, plus progress."""
    parts = parse_queue_key(queue)
    config.domain(parts["domain"])
    items, meta = read_queue(store, queue)
    reviews = {rid: r for rid, r in load_reviews(store, domain=parts["domain"], interval=parts["interval"],
                                                  prefix=prefix).items() if r.get("queue") == queue}
    shown = [{"id": str(i["id"]), "text": i["text"], "predicted_label": i["predicted_label"],
              "confidence": i["confidence"], "reason": i["reason"],
              "review_label": (reviews.get(str(i["id"])) or {}).get("review_label"),
              "reviewer": (reviews.get(str(i["id"])) or {}).get("reviewer")} for i in items]
    return {"queue": queue, "domain": parts["domain"], "interval": parts["interval"], "version": parts["version"],
            "labels": list(meta["labels"]), "items": shown,
            "share": meta.get("share"), "low_confidence_below": meta.get("low_confidence"),
            "progress": review_progress(items, set(reviews))}


def queue_meta(store: ObjectStore, queue: str) -> dict[str, Any]:
    """A committed queue's meta record (its commit marker)."""
    return json.loads(store.get(meta_key(queue)))
