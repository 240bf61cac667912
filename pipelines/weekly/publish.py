"""``publish_partition``: a validated batch becomes a committed, content-addressed partition version.

Writes the version's files (data, quarantine, duplicates, kept hashes, review queue, manifest), adds
the partition's signatures to the dedup index, then the commit record (last, ``pipelines.publish``).
The manifest's counts and ``steps`` come from the reports the chain staged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup.index import decode_segment
from pipelines.ingest.parse import is_record
from pipelines.publish import Commit, commit_version, latest_commit
from pipelines.review.queue import write_queue
from pipelines.serialize import canonical_json, get_json, get_jsonl, jsonl_bytes, read_parquet_rows, sha256_hex
from pipelines.standardize import schema_version
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.displace import find_displaced, kept_hashes
from pipelines.weekly.layout import PartitionRef, clean_staging, hash_index
from pipelines.weekly.results import PublishResult
from pipelines.weekly.shrink import InputsRemoved, refuse_message, release_hashes, removed_inputs, version_signatures
from pipelines.weekly import steps
from pipelines.weekly.steps import ValidationFailed, find_duplicates

log = logging.getLogger("pipelines.weekly")
PIPELINE_VERSION = "1.0.0"


def publish_partition(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                      who: str = "pipeline", accept_removed: bool = False) -> PublishResult:
    """Write the partition version of the validated batch at ``key``, add its signatures to the index,
    then commit (last). The run's staging area is deleted on every outcome but an exception.

    Idempotent: if the newest commit already names this exact version, nothing is written. After the
    commit the index is read again: partitions that this one displaced (an earlier week ingested after
    later ones), or a concurrent earlier week that displaced this one, are returned for re-publication.

    Raises:
        InputsRemoved: input files of the published version are gone and ``accept_removed``
            is not set (``pipelines.weekly.shrink``); with it, the hashes the week no longer holds are
            re-decided and the removal is recorded in the commit record.
    """
    ingest = get_json(store, part.staging(config, "ingest.json"))
    standardize = get_json(store, part.staging(config, "standardize.json"))
    dedup = get_json(store, part.staging(config, f"{find_duplicates.name}.json"))
    validation = get_json(store, part.staging(config, "validation.json"))
    if not validation.get("success"):
        raise ValidationFailed(f"{part.domain} {part.interval.name}: validation did not pass; not publishing")
    files = _version_files(config, store, part, key)
    prefix = part.curated(config)
    records_in = ingest["records_in"]
    kept = dedup["kept"]
    duplicate = dedup["duplicate"]
    quarantined = sum(1 for r in files["rejected"] if is_record(r))
    if records_in != kept + duplicate + quarantined:
        raise RuntimeError(f"counts do not reconcile for {part.domain} {part.interval.name}: "
                           f"in={records_in} kept={kept} duplicate={duplicate} quarantined={quarantined}")
    # A week whose inputs lost files: refused unless the removal is accepted (pipelines.weekly.shrink).
    previous = latest_commit(store, prefix)
    lost = removed_inputs(get_json(store, previous.record["manifest"]).get("inputs", []), ingest["inputs"]) \
        if previous is not None else []
    if lost and not accept_removed:
        raise InputsRemoved(refuse_message(part, previous.version, lost))
    removal, released_targets = None, []
    if records_in == 0 and not files["rejected"] and not lost:
        log.info("publish %s %s: no input in this interval, nothing to publish", part.domain, part.interval.name)
        _cleanup_staging(config, store, part)
        return PublishResult(published=False, reason="no input", domain=part.domain, interval=part.interval.name)
    digests = {name: sha256_hex(files[name]) for name in ("data", "quarantine", "duplicates")}
    version = sha256_hex(canonical_json(digests))[:16]
    kept_rows = read_parquet_rows(files["data"])
    manifest = {
        "domain": part.domain,
        "interval": part.interval.name,
        "version": version,
        "pipeline_version": PIPELINE_VERSION,
        "schema_version": standardize["schema_version"] if "schema_version" in standardize else schema_version(),
        "suite": {k: validation.get(k) for k in ("suite_name", "suite_sha256", "success", "evaluated")},
        "counts": {
            "files": ingest["files"],
            "records": {"in": records_in, "kept": kept, "duplicate": duplicate, "quarantined": quarantined},
            "quarantined_by_reason": dict(sorted(Counter(r["reason"] for r in files["rejected"]).items())),
            "duplicate_by_reason": dict(sorted(Counter(d["reason"] for d in files["duplicate_rows"]).items())),
            "usage": dict(sorted(Counter(r["usage"] for r in kept_rows).items())),
            "language": dict(sorted(Counter(r["language"] for r in kept_rows).items())),
        },
        "steps": _step_counts(config, store, part),
        "reconciles": True,
        "inputs": ingest["inputs"],
        "digests": {"data.parquet": digests["data"], "quarantine.jsonl": digests["quarantine"],
                    "duplicates.jsonl": digests["duplicates"]},
        "files": {"data": f"{prefix}/v-{version}/data.parquet",
                  "quarantine": f"{part.quarantine(config)}/v-{version}/quarantine.jsonl",
                  "duplicates": f"{part.quarantine(config)}/v-{version}/duplicates.jsonl"},
        "dedup": {"index_buckets": config.dedup.buckets, "signatures": None},
    }
    signatures = store.get(part.staging(config, "signatures.seg"))
    manifest["dedup"]["signatures"] = len(decode_segment(signatures))
    if previous and previous.version == version:
        log.info("publish %s %s: version %s already committed (#%d), nothing to do", part.domain,
                 part.interval.name, version, previous.n)
        republish = find_displaced(config, store, part, kept_rows, signatures)
        _cleanup_staging(config, store, part)
        return PublishResult(published=False, reason="unchanged", version=version, commit=previous.key,
                             domain=part.domain, interval=part.interval.name, republish=republish,
                             counts=manifest["counts"])
    if lost:
        before = version_signatures(store, prefix, previous.version)
        released = before["h"][~np.isin(before["h"], decode_segment(signatures)["h"])]
        released_targets = release_hashes(config, store, part, released)
        removal = {"inputs_removed": lost, "hashes_released": int(len(released)), "accepted_by": who}
        log.warning("publish %s %s: %d input file(s) removed (accepted by %s); %d hash(es) re-decided",
                    part.domain, part.interval.name, len(lost), who, len(released))
    # Data first, then the index, then the commit record: a reader never sees a partial partition.
    store.put(manifest["files"]["data"], files["data"])
    store.put(manifest["files"]["quarantine"], files["quarantine"])
    store.put(manifest["files"]["duplicates"], files["duplicates"])
    store.put(f"{prefix}/v-{version}/hashes.bin", kept_hashes(kept_rows))
    _write_review_queue(config, store, part, version)
    store.put(f"{prefix}/v-{version}/manifest.json", canonical_json(manifest))
    index = hash_index(config, store, part.domain)
    index.add(decode_segment(signatures), tag=part.interval.start.isoformat())
    changes = _changes(store, prefix, previous, kept_rows, files["duplicate_rows"], files["rejected"])
    if removal:
        changes = {**changes, **removal}
    commit = commit_version(store, prefix, {
        "version": version, "manifest": f"{prefix}/v-{version}/manifest.json",
        "previous_version": previous.version if previous else None,
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "committed_by": who, "run_key": part.run_key, "changes": changes,
    })
    log.info("publish %s %s: committed version %s as %s (in=%d kept=%d dup=%d quarantined=%d)", part.domain,
             part.interval.name, version, commit.key, records_in, kept, duplicate, quarantined)
    republish = find_displaced(config, store, part, kept_rows, signatures)
    seen = {(t["domain"], t["interval"]) for t in republish}
    republish += [t for t in released_targets if (t["domain"], t["interval"]) not in seen]
    _cleanup_staging(config, store, part)
    return PublishResult(published=True, version=version, commit=commit.key, domain=part.domain,
                         interval=part.interval.name, counts=manifest["counts"], republish=republish)


def _step_names() -> tuple[str, ...]:
    """Every step's report and rejections, in chain order (the order of the quarantine file's lines)."""
    return ("ingest", *(step.name for step in steps.CHAIN))


def _version_files(config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> dict:
    data = store.get(key)
    rejected = []
    for name in _step_names():
        try:
            rejected.extend(get_jsonl(store, part.staging(config, f"rejected.{name}.jsonl")))
        except NotFound:
            pass
    duplicates = get_jsonl(store, part.staging(config, "duplicates.jsonl"))
    return {"data": data, "quarantine": jsonl_bytes(rejected), "duplicates": jsonl_bytes(duplicates),
            "rejected": rejected, "duplicate_rows": duplicates}


def _step_counts(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Counts of every step of the chain, in order (deterministic: no timings)."""
    out = {}
    for name in _step_names():
        try:
            report = get_json(store, part.staging(config, f"{name}.json"))
        except NotFound:
            continue
        out[name] = {k: report[k] for k in ("in", "parsed", "kept", "rejected", "duplicate", "counts", "records_in",
                                          "labeller") if k in report}
    return out


def _write_review_queue(config: PipelineConfig, store: ObjectStore, part: PartitionRef, version: str) -> None:
    try:
        queue = get_jsonl(store, part.staging(config, "review_queue.jsonl"))
        label = get_json(store, part.staging(config, "labelled.json"))
    except NotFound:
        return
    if queue:
        write_queue(store, domain=part.domain, interval=part.interval.name, version=version, items=queue,
                    labels=label["labeller"].get("labels") or sorted({q["predicted_label"] for q in queue}),
                    labeller=label["labeller"])


def _changes(store: ObjectStore, prefix: str, previous: Commit | None, kept_rows: list[dict],
             duplicates: list[dict], rejected: list[dict]) -> dict:
    """What moved relative to the previous version, and why (the manifest of a re-publication)."""
    if previous is None:
        return {"first_version": True}
    try:
        old_rows = read_parquet_rows(store.get(f"{prefix}/v-{previous.version}/data.parquet"))
    except NotFound:
        return {"previous_missing": previous.version}
    old = {r["id"]: r["content_sha256"] for r in old_rows}
    new = {r["id"]: r["content_sha256"] for r in kept_rows}
    why = {d["id"]: f"{d['reason']} (first seen {d['first_seen']})" for d in duplicates}
    removed = [{"id": i, "content_sha256": old[i], "reason": why.get(i, "no longer in the inputs or quarantined")}
               for i in sorted(set(old) - set(new))]
    added = [{"id": i, "content_sha256": new[i]} for i in sorted(set(new) - set(old))]
    return {"removed": removed, "added": added}


def _cleanup_staging(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> None:
    """Delete the run's staging area of the partition (it holds raw, unmasked text)."""
    clean_staging(config, store, part)
