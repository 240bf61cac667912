"""``publish_partition``: a validated batch becomes a committed, content-addressed partition version.

Writes the version's files (data, quarantine, duplicates, kept hashes, review queue, manifest), adds
the partition's signatures to the dedup index, then the commit record (last, ``pipelines.publish``).
The manifest's counts and ``steps`` come from the reports the chain staged.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup.index import decode_segment
from pipelines.ingest.parse import is_record
from pipelines.publish import Commit, commit_version, latest_commit, read_version_table
from pipelines.review.queue import write_queue
from pipelines.serialize import (
    ParquetParts, canonical_json, file_sha256, get_json, get_jsonl, iter_arrow_batches, sha256_hex,
)
from pipelines.standardize import schema_version
from pipelines.storage import NotFound, ObjectStore, put_file
from pipelines.weekly.batches import Progress, download, log, work_folder
from pipelines.weekly.displace import find_displaced, hash_array, kept_hashes
from pipelines.weekly.layout import PartitionRef, clean_staging, hash_index
from pipelines.weekly.parts import staged_parts
from pipelines.weekly.results import PublishResult
from pipelines.weekly.shrink import InputsRemoved, refuse_message, release_hashes, removed_inputs, version_signatures
from pipelines.weekly import steps
from pipelines.weekly.steps import ValidationFailed, find_duplicates

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
    try:
        queue = get_jsonl(store, part.staging(config, "review_queue.jsonl"))
    except NotFound:
        queue = []
    with work_folder("publish") as folder:
        files = _stage_version_files(config, store, part, key, folder, queue)
        result = _publish_staged(config, store, part, files, ingest=ingest, standardize=standardize, dedup=dedup,
                                 validation=validation, who=who, accept_removed=accept_removed, queue=queue)
    _cleanup_staging(config, store, part)
    return result


def _publish_staged(config: PipelineConfig, store: ObjectStore, part: PartitionRef, files: VersionFiles, *,
                    ingest: dict, standardize: dict, dedup: dict, validation: dict, who: str,
                    accept_removed: bool, queue: list[dict]) -> PublishResult:
    prefix = part.curated(config)
    records_in = ingest["records_in"]
    kept = dedup["kept"]
    duplicate = dedup["duplicate"]
    quarantined = files.quarantined
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
    if records_in == 0 and not files.rejected_lines and not lost:
        log.info("publish %s %s: no input in this interval, nothing to publish", part.domain, part.interval.name)
        return PublishResult(published=False, reason="no input", domain=part.domain, interval=part.interval.name)
    part_digests = [file_sha256(p) for p in files.data]
    data_digest = part_digests[0] if len(part_digests) == 1 else sha256_hex(canonical_json(part_digests))
    digests = {"data": data_digest, "quarantine": file_sha256(files.quarantine),
               "duplicates": file_sha256(files.duplicates)}
    version = sha256_hex(canonical_json(digests))[:16]
    data_keys = ([f"{prefix}/v-{version}/data.parquet"] if len(files.data) == 1 else
                 [f"{prefix}/v-{version}/data/part-{k:05d}.parquet" for k in range(len(files.data))])
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
            "quarantined_by_reason": dict(sorted(files.quarantined_by_reason.items())),
            "duplicate_by_reason": dict(sorted(files.duplicate_by_reason.items())),
            "usage": dict(sorted(files.usage.items())),
            "language": dict(sorted(files.language.items())),
        },
        "steps": _step_counts(config, store, part),
        "reconciles": True,
        "inputs": ingest["inputs"],
        "digests": {"data.parquet": digests["data"], "quarantine.jsonl": digests["quarantine"],
                    "duplicates.jsonl": digests["duplicates"]},
        "files": {"data": data_keys[0] if len(data_keys) == 1 else f"{prefix}/v-{version}/data/",
                  "quarantine": f"{part.quarantine(config)}/v-{version}/quarantine.jsonl",
                  "duplicates": f"{part.quarantine(config)}/v-{version}/duplicates.jsonl"},
        "dedup": {"index_buckets": config.dedup.buckets, "signatures": None},
    }
    if len(data_keys) > 1:  # objects of any size: the data in parts, each under ingest.max_object_bytes
        manifest["data_parts"] = [{"key": k, "sha256": d, "rows": r}
                                  for k, d, r in zip(data_keys, part_digests, files.part_rows)]
    signatures = store.get(part.staging(config, "signatures.seg"))
    manifest["dedup"]["signatures"] = len(decode_segment(signatures))
    if previous and previous.version == version:
        log.info("publish %s %s: version %s already committed (#%d), nothing to do", part.domain,
                 part.interval.name, version, previous.n)
        republish = find_displaced(config, store, part, files.kept_hashes, signatures)
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
    for data_key, path in zip(data_keys, files.data):
        put_file(store, data_key, path)
    put_file(store, manifest["files"]["quarantine"], files.quarantine)
    put_file(store, manifest["files"]["duplicates"], files.duplicates)
    store.put(f"{prefix}/v-{version}/hashes.bin", kept_hashes(files.kept_hashes))
    _write_review_queue(config, store, part, version, queue)
    store.put(f"{prefix}/v-{version}/manifest.json", canonical_json(manifest))
    index = hash_index(config, store, part.domain)
    index.add(decode_segment(signatures), tag=part.interval.start.isoformat())
    changes = _changes(store, prefix, previous, files)
    if removal:
        changes = {**changes, **removal}
    commit = commit_version(store, prefix, {
        "version": version, "manifest": f"{prefix}/v-{version}/manifest.json",
        "previous_version": previous.version if previous else None,
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "committed_by": who, "run_key": part.run_key, "changes": changes,
    })
    log.info("publish %s %s: committed version %s as %s (in=%d kept=%d dup=%d quarantined=%d, %d data file(s))",
             part.domain, part.interval.name, version, commit.key, records_in, kept, duplicate, quarantined,
             len(data_keys))
    republish = find_displaced(config, store, part, files.kept_hashes, signatures)
    seen = {(t["domain"], t["interval"]) for t in republish}
    republish += [t for t in released_targets if (t["domain"], t["interval"]) not in seen]
    return PublishResult(published=True, version=version, commit=commit.key, domain=part.domain,
                         interval=part.interval.name, counts=manifest["counts"], republish=republish)


@dataclass
class VersionFiles:
    """A version's files, written locally before upload, and what publish counts from them on the way."""

    data: list[Path]
    part_rows: list[int]
    quarantine: Path
    duplicates: Path
    rejected_lines: int = 0
    quarantined: int = 0
    quarantined_by_reason: Counter = field(default_factory=Counter)
    duplicate_by_reason: Counter = field(default_factory=Counter)
    usage: Counter = field(default_factory=Counter)
    language: Counter = field(default_factory=Counter)
    kept_hashes: np.ndarray = field(default_factory=lambda: np.empty(0, "S32"))
    kept_ids: object = None  # pyarrow string array, for the changes against the previous version


def _step_names() -> tuple[str, ...]:
    """Every step's report and rejections, in chain order (the order of the quarantine file's lines)."""
    return ("ingest", *(step.name for step in steps.CHAIN))


def _stage_version_files(config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                         folder: Path, queue: list[dict]) -> VersionFiles:
    """Write the version's files to ``folder`` in one streaming pass each: the data (regrouped into
    ``ingest.batch_rows`` row groups, split into parts at ``ingest.max_object_bytes``), the quarantine
    (every step's rejections, in chain order) and the duplicates; count what the manifest needs, and
    fill in the texts of the review ``queue``'s records."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    batch_rows = config.ingest.batch_rows
    hashes, ids = [], []
    progress = Progress("publish", f"{part.domain} {part.interval.name}")
    usage: Counter = Counter()
    language: Counter = Counter()
    wanted = {q["id"]: q for q in queue}  # the review queue's records: their texts are taken on the way
    wanted_ids = pa.array(list(wanted), pa.string())
    with ParquetParts(folder / "data", batch_rows=batch_rows, max_bytes=config.ingest.max_object_bytes) as out:
        for part_key in staged_parts(store, key):  # a sharded week: its shards' rows, in shard order
            source = download(store, part_key, folder, "validated.parquet")
            for batch in iter_arrow_batches(source, batch_rows=batch_rows):  # Arrow through: no dicts
                out.write_arrow(batch)
                usage.update(batch.column("usage").to_pylist())
                language.update(batch.column("language").to_pylist())
                hashes.append(hash_array(batch.column("content_sha256")))
                batch_ids = batch.column("id").cast(pa.string())
                ids.append(batch_ids)
                if wanted:
                    at = pc.indices_nonzero(pc.is_in(batch_ids, value_set=wanted_ids))
                    for i, text in zip(batch_ids.take(at).to_pylist(), batch.column("text").take(at).to_pylist()):
                        wanted[i]["text"] = text
                progress.add(batch.num_rows)
            source.unlink()
        paths = out.close()
    files = VersionFiles(data=paths, part_rows=[pq.ParquetFile(p).metadata.num_rows for p in paths],
                         quarantine=folder / "quarantine.jsonl", duplicates=folder / "duplicates.jsonl",
                         usage=usage, language=language,
                         kept_hashes=np.concatenate(hashes) if hashes else np.empty(0, "S32"),
                         kept_ids=pa.concat_arrays(ids) if ids else pa.array([], pa.string()))
    with open(files.quarantine, "wb") as quarantine:
        for name in _step_names():
            for staged_key in staged_parts(store, part.staging(config, f"rejected.{name}.jsonl")):
                try:
                    staged = download(store, staged_key, folder, "rejected.jsonl")
                except NotFound:
                    continue
                with open(staged, "rb") as fh:
                    for line in fh:
                        if not line.strip():
                            continue
                        rejection = json.loads(line)
                        files.rejected_lines += 1
                        files.quarantined += is_record(rejection)
                        files.quarantined_by_reason[rejection["reason"]] += 1
                        quarantine.write(line if line.endswith(b"\n") else line + b"\n")
                staged.unlink()
    with open(files.duplicates, "wb") as duplicates:
        for staged_key in staged_parts(store, part.staging(config, "duplicates.jsonl")):
            staged = download(store, staged_key, folder, "staged-duplicates.jsonl")
            with open(staged, "rb") as fh:
                for line in fh:
                    if line.strip():
                        files.duplicate_by_reason[json.loads(line)["reason"]] += 1
                        duplicates.write(line if line.endswith(b"\n") else line + b"\n")
            staged.unlink()
    progress.done()
    return files


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


def _write_review_queue(config: PipelineConfig, store: ObjectStore, part: PartitionRef, version: str,
                        queue: list[dict]) -> None:
    try:
        label = get_json(store, part.staging(config, "labelled.json"))
    except NotFound:
        return
    if queue:
        write_queue(store, domain=part.domain, interval=part.interval.name, version=version, items=queue,
                    labels=label["labeller"].get("labels") or sorted({q["predicted_label"] for q in queue}),
                    labeller=label["labeller"])


def _changes(store: ObjectStore, prefix: str, previous: Commit | None, files: VersionFiles) -> dict:
    """What moved relative to the previous version, and why (the manifest of a re-publication).

    Compared on the (id, content hash) columns only, as Arrow arrays: no rows in memory."""
    import pyarrow.compute as pc

    if previous is None:
        return {"first_version": True}
    try:
        manifest = get_json(store, previous.record["manifest"])
        old_table = read_version_table(store, manifest, columns=["id", "content_sha256"])
    except (NotFound, KeyError):
        return {"previous_missing": previous.version}
    old_ids, old_hashes = old_table.column("id").combine_chunks(), old_table.column("content_sha256").combine_chunks()
    new_ids = files.kept_ids
    gone = pc.invert(pc.is_in(old_ids, value_set=new_ids))
    came = pc.invert(pc.is_in(new_ids, value_set=old_ids))
    removed_ids = pc.filter(old_ids, gone).to_pylist()
    added_ids = pc.filter(new_ids, came).to_pylist()
    old = dict(zip(removed_ids, pc.filter(old_hashes, gone).to_pylist()))
    new_hash = dict(zip(added_ids, (h.hex() for h in files.kept_hashes[came.to_numpy(zero_copy_only=False)])))
    why: dict[str, str] = {}
    if removed_ids:
        wanted = set(removed_ids)
        with open(files.duplicates, "rb") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    if d["id"] in wanted:
                        why[d["id"]] = f"{d['reason']} (first seen {d['first_seen']})"
    removed = [{"id": i, "content_sha256": old[i], "reason": why.get(i, "no longer in the inputs or quarantined")}
               for i in sorted(set(removed_ids))]
    added = [{"id": i, "content_sha256": new_hash[i]} for i in sorted(set(added_ids))]
    return {"removed": removed, "added": added}


def _cleanup_staging(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> None:
    """Delete the run's staging area of the partition (it holds raw, unmasked text)."""
    clean_staging(config, store, part)
