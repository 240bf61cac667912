"""Erasure: remove one record (and the copies of its text) from everywhere the pipeline put it.

``purge_record`` finds the record in a domain's curated versions (by id, content hash and/or ``subject_id``: every
record of that subject), lists the promoted artifacts that were trained on it (the privacy ledger's record sets:
``pipelines.privacy.artifacts_trained_on``), then:

1. **landing**: blanks the record's lines in its landing files (JSONL/CSV: the line becomes empty,
   which the parser skips, so every other record keeps its line number, ``source_uri`` and derived
   id; Parquet: the row is dropped);
2. **curated**: publishes a NEW version of each partition whose committed version held it (rows,
   quarantine and duplicates lists without it; same commit protocol, ``pipelines.publish``), then
   deletes every version folder (curated and quarantine) that held it, the old committed one included;
3. **commit records** that name the id (``changes.removed``) are rewritten with the id redacted;
4. **review queue** lines and imported reviews of the id are removed (meta digests updated), and a console
   release request (``pipelines.release_requests``) whose corrected record it is loses that record;
5. **dedup index**: the content hashes are removed (``pipelines.dedup.purge.remove_hashes``);
6. **staging** of the affected partitions is deleted (in-flight runs there must be re-run);
7. an ``audit`` entry ``data_deletion`` records who, why and counts, with the sha256 of the ids,
   never the ids or texts; its content hashes are what the next model card counts as erased.

The next retrain cannot read the record (it is gone from curated data); a weekly fine-tune still starts from
weights that were trained on it, which its model card says, until a monthly retrain from the base model.

With ``include_copies`` (default) records dropped as duplicates of the same text go too: the index
only knows hashes, so a copy left in landing would bring the same text back on the next re-run.
On a versioned bucket, old object versions remain: use crypto-shredding (``shred_partition``) or
lifecycle rules for them.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field

from pipelines.config import ConfigError, PipelineConfig
from pipelines.privacy import artifacts_trained_on, hash_subject
from pipelines.publish import COMMITS, commit_version, latest_commit, partition_names, partition_prefix, read_version_rows
from pipelines.release_requests import OUTCOME, PURGED, requests_prefix
from pipelines.security.audit import write_audit
from pipelines.serialize import canonical_json, jsonl_bytes, parquet_bytes, sha256_hex
from pipelines.storage import NotFound, ObjectStore

REDACTED = "[purged]"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION_DIR = re.compile(r"/v-([^/]+)/$")


class PurgeError(ValueError):
    """The purge request is invalid; the message says what to pass."""


@dataclass
class PurgeResult:
    """What a purge changed (ids are never returned, only counts and keys)."""

    domain: str
    records_found: int = 0
    republished: list[dict] = field(default_factory=list)
    versions_deleted: list[str] = field(default_factory=list)
    landing_files_rewritten: list[str] = field(default_factory=list)
    landing_records_removed: int = 0
    commit_records_redacted: int = 0
    review_files_rewritten: list[str] = field(default_factory=list)
    index_entries_removed: int = 0
    staging_objects_deleted: int = 0
    # Promoted artifacts whose training (own run or an ancestor's) read the purged records / the subject's records.
    trained_on_records: list[dict] = field(default_factory=list)
    trained_on_subject: list[dict] = field(default_factory=list)
    audit_key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Targets:
    ids: set[str]
    hashes: set[str]
    uris: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)

    def row(self, row: dict) -> bool:
        return row.get("id") in self.ids or row.get("content_sha256") in self.hashes \
            or row.get("source_uri") in self.uris or (row.get("subject_sha256") or "") in self.subjects

    def rejection(self, entry: dict) -> bool:
        if entry.get("source_uri") in self.uris:
            return True
        raw = entry.get("raw")
        if isinstance(raw, str) and raw.startswith("{"):
            try:
                value = json.loads(raw)
            except ValueError:
                return any(i in raw for i in self.ids)
            return isinstance(value, dict) and _raw_id(value) in self.ids
        return isinstance(raw, str) and any(i in raw for i in self.ids)


def _raw_id(raw: dict) -> str | None:
    if "request_id" in raw:
        return f"fb-{raw['request_id']}"
    return raw.get("id") if isinstance(raw.get("id"), str) else None


def _jsonl_rows(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _versions(store: ObjectStore, folder: str) -> list[str]:
    return [m.group(1) for d in store.list_dirs(folder) if (m := _VERSION_DIR.search(d))]


def _version_rows_or_empty(store: ObjectStore, prefix: str, version: str) -> list[dict]:
    # A big version is stored as part files (data/part-*.parquet) and has no data.parquet.
    try:
        return read_version_rows(store, prefix, version)
    except NotFound:
        return []


def _read_or_empty(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except NotFound:
        return None


def purge_record(*, config: PipelineConfig, store: ObjectStore, domain: str, record_id: str | None = None,
                 text_sha256: str | None = None, subject_id: str | None = None, who: str, why: str,
                 include_copies: bool = True,
                 audit_prefix: str = "audit", review_prefix: str = "review",
                 now: dt.datetime | None = None) -> PurgeResult:
    """Remove a record from landing, curated versions, commit records, the review queue and the dedup index.

    Args:
        config: the pipeline configuration (prefixes, sources, dedup layout).
        store: the object store (an ``EncryptedObjectStore`` works the same).
        domain: the record's domain.
        record_id: the curated ``id`` (``fb-<request_id>`` for feedback).
        text_sha256: the curated ``content_sha256`` (``pipelines.dedup.normalize.content_hash(text).hex()``).
        subject_id: a subject's id as given at ingestion (``subject_id``): every record of that subject.
        who: who asked for the erasure (audit).
        why: the reason or request reference (audit).
        include_copies: also remove records with the same content hash (copies dropped as duplicates).
        audit_prefix: ``security.audit_prefix``.
        review_prefix: the review queue prefix.
        now: the commit and audit time (default: now).

    Returns:
        Counts and keys of what changed, and the promoted artifacts trained on the records (or the subject).

    Raises:
        PurgeError: none of ``record_id``, ``text_sha256``, ``subject_id`` given, bad hash, or empty who/why.
    """
    if not record_id and not text_sha256 and not subject_id:
        raise PurgeError("purge: pass record_id and/or text_sha256 (or subject_id)")
    if text_sha256 is not None and not _HEX64.match(text_sha256):
        raise PurgeError(f"text_sha256={text_sha256!r}: use the 64 lowercase hex digits of the curated content_sha256")
    if not who.strip() or not why.strip():
        raise PurgeError("purge: say who asked and why (both are written to the audit log)")
    config.domain(domain)
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    curated, quarantine = config.storage.curated_prefix, config.storage.quarantine_prefix
    targets = _Targets(ids={record_id} if record_id else set(), hashes={text_sha256} if text_sha256 else set(),
                       subjects={hash_subject(subject_id, domain=domain).hex()} if subject_id else set())
    result = PurgeResult(domain=domain)
    intervals = partition_names(store, curated, domain)

    # 1. Find: every version of every partition; widen to copies until nothing new turns up.
    hits: dict[tuple[str, str], bool] = {}  # (interval, version) -> holds the record somewhere
    for _round in range(4):
        # Records dropped as duplicates share the hash; without copies only an explicitly given hash reaches them.
        copy_hashes = targets.hashes if include_copies else ({text_sha256} if text_sha256 else set())
        before = (len(targets.ids), len(targets.hashes), len(targets.uris))
        for name in intervals:
            for version in _versions(store, f"{curated}/{domain}/{name}/"):
                for row in _version_rows_or_empty(store, f"{curated}/{domain}/{name}", version):
                    if targets.row(row):
                        hits[(name, version)] = True
                        targets.uris.add(row["source_uri"])
                        # The record's hash finds its copies; copies' ids find their review lines.
                        targets.hashes.add(row["content_sha256"])
                        if include_copies:
                            targets.ids.add(row["id"])
                qfolder = f"{quarantine}/{domain}/{name}/v-{version}"
                for entry in _jsonl_rows(_read_or_empty(store, f"{qfolder}/duplicates.jsonl") or b""):
                    if entry.get("id") in targets.ids or entry.get("content_sha256") in copy_hashes:
                        hits[(name, version)] = True
                        targets.uris.add(entry["source_uri"])
                        if include_copies:
                            targets.ids.add(entry["id"])
                for entry in _jsonl_rows(_read_or_empty(store, f"{qfolder}/quarantine.jsonl") or b""):
                    if "#" in entry.get("source_uri", "") and targets.rejection(entry):
                        hits[(name, version)] = True
                        targets.uris.add(entry["source_uri"])
        if (len(targets.ids), len(targets.hashes), len(targets.uris)) == before:
            break
    result.records_found = len(targets.uris)
    touched = sorted({name for name, _v in hits}) or intervals
    result.trained_on_records, result.trained_on_subject = _trained_artifacts(store, config, domain, targets,
                                                                              subject_id)

    # 2. Landing first: if the purge stops half-way, a re-run of the week cannot bring the record back.
    # Without copies, a landing line matches by its own text hash only when that hash was asked for.
    _purge_landing(store, config, domain, touched, targets, set(copy_hashes), result)

    # 3. New versions without the record, then delete the versions that held it.
    for name in sorted({n for n, _v in hits}):
        prefix = partition_prefix(curated, domain, name)
        commit = latest_commit(store, prefix)
        if commit is not None and (name, commit.version) in hits:
            result.republished.append(_republish(store, config, domain, name, commit, targets, who, why, moment))
    for name, version in sorted(hits):
        for folder in (f"{curated}/{domain}/{name}/v-{version}/", f"{quarantine}/{domain}/{name}/v-{version}/"):
            for info in list(store.list(folder)):
                store.delete(info.key)
        result.versions_deleted.append(f"{domain}/{name}/v-{version}")

    # 4. Commit records and 5. review files that name the ids.
    for name in intervals:
        for info in list(store.list(f"{partition_prefix(curated, domain, name)}/{COMMITS}/")):
            body = store.get(info.key)
            if any(i.encode() in body for i in targets.ids):
                record = _redact(json.loads(body), targets.ids)
                store.put(info.key, canonical_json(record))
                result.commit_records_redacted += 1
        _purge_reviews(store, f"{review_prefix}/{domain}/{name}/", targets, result)
        _purge_release_requests(store, requests_prefix(domain, name, prefix=review_prefix), targets, result)

    # 6. Index, 7. staging.
    from pipelines.dedup.index import HashIndex
    from pipelines.dedup.purge import remove_hashes

    index = HashIndex(store=store, prefix=f"{config.storage.index_prefix}/{domain}", buckets=config.dedup.buckets,
                      compact_after=config.dedup.compact_after)
    result.index_entries_removed = remove_hashes(index, [bytes.fromhex(h) for h in targets.hashes])
    for name in touched:
        for info in list(store.list(f"{config.storage.staging_prefix}/{domain}/{name}/")):
            store.delete(info.key)
            result.staging_objects_deleted += 1

    # 8. Audit, last: it records what was actually done.
    result.audit_key = write_audit(store, action="data_deletion", who=who, why=why, now=moment,
                                   what=f"{domain}: {result.records_found} record(s) purged", prefix=audit_prefix,
                                   details={"domain": domain,
                                            "record_id_sha256": sorted(sha256_hex(i.encode()) for i in targets.ids),
                                            "content_sha256": sorted(targets.hashes),
                                            **{k: v for k, v in result.to_dict().items()
                                               if k not in ("domain", "audit_key")}})
    return result


def _trained_artifacts(store: ObjectStore, config: PipelineConfig, domain: str, targets: _Targets,
                       subject_id: str | None) -> tuple[list[dict], list[dict]]:
    """Promoted artifacts trained on the found records, and on the subject's records (by the ledger's subject maps)."""
    try:
        privacy = config.for_domain(domain).require_privacy()
    except ConfigError:  # no budget: the domain never trained with DP, so it has no ledger
        return [], []
    prefix = config.artifacts.prefix

    def listed(**which) -> list[dict]:
        return [asdict(a) for a in artifacts_trained_on(config=privacy, store=store, domain=domain,
                                                        artifacts_prefix=prefix, **which)]

    by_records = listed(records=sorted(targets.hashes)) if targets.hashes else []
    return by_records, (listed(subject_ids=[subject_id]) if subject_id else [])


def _redact(value: object, ids: set[str]) -> object:
    if isinstance(value, dict):
        return {k: _redact(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, ids) for v in value]
    if isinstance(value, str) and any(i in value for i in ids):
        return REDACTED
    return value


def _republish(store: ObjectStore, config: PipelineConfig, domain: str, name: str, commit, targets: _Targets,
               who: str, why: str, moment: dt.datetime) -> dict:
    """Publish the committed version minus the record (data written first, commit record last)."""
    prefix = partition_prefix(config.storage.curated_prefix, domain, name)
    manifest = json.loads(store.get(commit.record["manifest"]))
    rows = read_version_rows(store, prefix, commit.version)
    rejected = _jsonl_rows(_read_or_empty(store, manifest["files"]["quarantine"]) or b"")
    duplicates = _jsonl_rows(_read_or_empty(store, manifest["files"]["duplicates"]) or b"")
    kept_rows = [r for r in rows if not targets.row(r)]
    kept_rejected = [r for r in rejected if not targets.rejection(r)]
    kept_dups = [d for d in duplicates if d.get("source_uri") not in targets.uris and d.get("id") not in targets.ids]
    files = {"data": parquet_bytes(kept_rows), "quarantine": jsonl_bytes(kept_rejected),
             "duplicates": jsonl_bytes(kept_dups)}
    digests = {k: sha256_hex(v) for k, v in files.items()}
    version = sha256_hex(canonical_json(digests))[:16]
    qprefix = f"{config.storage.quarantine_prefix}/{domain}/{name}"
    quarantined = sum(1 for r in kept_rejected if "#" in r["source_uri"])
    records = {"in": len(kept_rows) + len(kept_dups) + quarantined, "kept": len(kept_rows),
               "duplicate": len(kept_dups), "quarantined": quarantined}
    counts = dict(manifest["counts"])
    counts.update(records=records,
                  quarantined_by_reason=_count(kept_rejected, "reason"),
                  duplicate_by_reason=_count(kept_dups, "reason"),
                  usage=_count(kept_rows, "usage"), language=_count(kept_rows, "language"))
    removed = {"records": len(rows) - len(kept_rows), "quarantined": len(rejected) - len(kept_rejected),
               "duplicates": len(duplicates) - len(kept_dups)}
    manifest = dict(manifest, version=version, counts=counts,
                    digests={"data.parquet": digests["data"], "quarantine.jsonl": digests["quarantine"],
                             "duplicates.jsonl": digests["duplicates"]},
                    files={"data": f"{prefix}/v-{version}/data.parquet",
                           "quarantine": f"{qprefix}/v-{version}/quarantine.jsonl",
                           "duplicates": f"{qprefix}/v-{version}/duplicates.jsonl"},
                    purged={"from_version": commit.version, "at": moment.isoformat(timespec="seconds"), **removed})
    store.put(manifest["files"]["data"], files["data"])
    store.put(manifest["files"]["quarantine"], files["quarantine"])
    store.put(manifest["files"]["duplicates"], files["duplicates"])
    store.put(f"{prefix}/v-{version}/hashes.bin",
              b"".join(sorted(bytes.fromhex(r["content_sha256"]) for r in kept_rows)))
    store.put(f"{prefix}/v-{version}/manifest.json", canonical_json(manifest))
    new = commit_version(store, prefix, {
        "version": version, "manifest": f"{prefix}/v-{version}/manifest.json", "previous_version": commit.version,
        "committed_at": moment.isoformat(timespec="seconds"), "committed_by": who, "run_key": "purge",
        "changes": {"purged": removed, "why": why},
    })
    return {"interval": name, "previous_version": commit.version, "version": version, "commit": new.key, **removed}


def _count(rows: list[dict], key: str) -> dict:
    out: dict[str, int] = {}
    for row in rows:
        out[row[key]] = out.get(row[key], 0) + 1
    return dict(sorted(out.items()))


def _purge_landing(store: ObjectStore, config: PipelineConfig, domain: str, intervals: list[str],
                   targets: _Targets, hashes: set[str], result: PurgeResult) -> None:
    from pipelines.dedup.normalize import content_hash
    from pipelines.partition import Interval
    from pipelines.weekly import list_interval_files

    seen: set[str] = set()
    for name in intervals:
        interval = Interval.parse(name)
        for source in config.ingest.sources:
            prefix = f"{config.storage.landing_prefix}/{source.prefix_for(domain)}".rstrip("/")
            for info in list_interval_files(store, prefix=prefix, interval=interval):
                if info.key in seen:
                    continue
                seen.add(info.key)

                def match(line: int, raw: dict, key: str = info.key, kind: str = source.kind) -> bool:
                    if f"{key}#L{line}" in targets.uris or _raw_id(raw) in targets.ids:
                        return True
                    text = f"{raw.get('question')}\n{raw.get('answer')}" if kind == "feedback" else raw.get("text")
                    return isinstance(text, str) and content_hash(text).hex() in hashes

                data = store.get(info.key)
                rewritten, removed = _rewrite_landing(info.key, data, config.ingest.encodings, match)
                if removed:
                    store.put(info.key, rewritten)
                    result.landing_files_rewritten.append(info.key)
                    result.landing_records_removed += removed


def _rewrite_landing(key: str, data: bytes, encodings, match) -> tuple[bytes, int]:
    """The file without the matching records, and how many were removed (0: leave the file alone)."""
    from pipelines.ingest.parse import decode, file_format

    kind = file_format(key)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError, ValueError):
            return data, 0
        rows = table.to_pylist()
        keep = [not match(n, {k: v for k, v in r.items() if v is not None}) for n, r in enumerate(rows, start=1)]
        if all(keep):
            return data, 0
        buf = io.BytesIO()
        pq.write_table(table.filter(pa.array(keep)), buf)
        return buf.getvalue(), keep.count(False)
    decoded = decode(data, encodings)
    if decoded is None:
        return data, 0
    text, encoding = decoded
    lines = text.split("\n")
    blank: list[tuple[int, int]] = []  # 1-based inclusive line spans
    if kind == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if match(number, value if isinstance(value, dict) else {}):
                blank.append((number, number))
    elif kind == "csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
            start = reader.line_num + 1
            for row in reader:
                number, end = start, reader.line_num
                start = end + 1
                if row and len(row) == len(header) and match(number, {h: v for h, v in zip(header, row) if v != ""}):
                    blank.append((number, end))
        except (StopIteration, csv.Error):
            pass
    if not blank:
        return data, 0
    for first, last in blank:
        for n in range(first, last + 1):
            lines[n - 1] = ""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    return bom + "\n".join(lines).encode(encoding), len(blank)


def _purge_release_requests(store: ObjectStore, folder: str, targets: _Targets, result: PurgeResult) -> None:
    """Erase the corrected record of release requests that carry the purged record (a pending one is then
    recorded as failed by ingestion instead of landing it)."""
    for info in list(store.list(folder)):
        if info.key.endswith(OUTCOME) or not info.key.endswith(".json"):
            continue
        try:
            body = json.loads(store.get(info.key))
        except ValueError:
            continue  # not a request: ingestion reports it as malformed
        if isinstance(body, dict) and isinstance(body.get("corrected"), dict) and targets.row(body["corrected"]):
            body["corrected"] = PURGED
            store.put(info.key, json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            result.review_files_rewritten.append(info.key)


def _purge_reviews(store: ObjectStore, folder: str, targets: _Targets, result: PurgeResult) -> None:
    for info in list(store.list(folder)):
        name = info.key[len(folder):]
        if not name.endswith(".jsonl") or not (name.startswith("queue-") or name.startswith("reviews-")):
            continue
        body = store.get(info.key)
        if not any(i.encode() in body for i in targets.ids):
            continue
        rows = _jsonl_rows(body)
        kept = [r for r in rows if str(r.get("id")) not in targets.ids]
        if name.startswith("reviews-") and not kept:
            store.delete(info.key)
            result.review_files_rewritten.append(info.key)
            continue
        # Same serialization as pipelines.review.queue (field order kept, ensure_ascii off).
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept).encode()
        store.put(info.key, data)
        result.review_files_rewritten.append(info.key)
        if name.startswith("queue-"):
            meta_key = info.key.removesuffix(".jsonl") + ".meta.json"
            try:
                meta = json.loads(store.get(meta_key))
            except NotFound:
                continue
            meta["sha256"] = hashlib.sha256(data).hexdigest()
            meta["counts"] = {"queued": len(kept), "low_confidence": sum(r.get("reason") == "low_confidence" for r in kept),
                              "sampled": sum(r.get("reason") == "sampled" for r in kept)}
            meta["purged"] = len(rows) - len(kept)
            store.put(meta_key, json.dumps(meta, indent=2, ensure_ascii=False).encode())
