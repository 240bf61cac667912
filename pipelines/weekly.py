"""The weekly ingestion flow: one partition (domain, data interval) through every stage.

Each public function is one step (one Airflow task): it reads its input from the staging area of the
partition's run, writes its output there, and returns a small JSON-able dict (keys and counts). The
DAG calls them one per task; ``process_partition`` calls them in sequence (re-publication, CLI).

Stages, in order (governance runs before dedup, so the index hashes cleaned, masked text)::

    ingest_landing -> standardize_records -> clean_text -> mask_pii -> filter_sensitive
        -> find_duplicates -> auto_label -> validate_batch -> publish_partition -> republish_displaced
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass

from pipelines.config import PipelineConfig
from pipelines.ingest.parse import Rejection, parse_file
from pipelines.partition import Interval, arrival_date_of, day_number, from_day_number
from pipelines.publish import (
    canonical_json, commit_version, jsonl_bytes, latest_commit, parquet_bytes, partition_names,
    partition_prefix, read_parquet_rows, sha256_hex,
)
from pipelines.storage import NotFound, ObjectStore

log = logging.getLogger("pipelines.weekly")
PIPELINE_VERSION = "1.0.0"


class ValidationFailed(RuntimeError):
    """The curated batch failed its expectation suite; the partition was not published."""


@dataclass(frozen=True)
class PartitionRef:
    """One domain's data interval, processed under one run key (staging is per run)."""

    domain: str
    interval: Interval
    run_key: str = "manual"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", self.run_key):
            raise ValueError(f"run_key {self.run_key!r}: use letters, digits, '.', '_' or '-'")

    @classmethod
    def for_run(cls, *, domain: str, interval: Interval, run_id: str) -> PartitionRef:
        return cls(domain=domain, interval=interval, run_key=re.sub(r"[^A-Za-z0-9._-]+", "-", run_id)[:200])

    def staging(self, config: PipelineConfig, name: str) -> str:
        return f"{config.storage.staging_prefix}/{self.domain}/{self.interval.name}/{self.run_key}/{name}"

    def curated(self, config: PipelineConfig) -> str:
        return partition_prefix(config.storage.curated_prefix, self.domain, self.interval.name)

    def quarantine(self, config: PipelineConfig) -> str:
        return f"{config.storage.quarantine_prefix}/{self.domain}/{self.interval.name}"


def _put_json(store: ObjectStore, key: str, value: object) -> None:
    store.put(key, canonical_json(value))


def _get_json(store: ObjectStore, key: str) -> dict:
    return json.loads(store.get(key))


def _get_jsonl(store: ObjectStore, key: str) -> list[dict]:
    return [json.loads(line) for line in store.get(key).decode("utf-8").splitlines() if line]


def list_interval_files(store: ObjectStore, *, prefix: str, interval: Interval) -> list:
    """Files under ``<prefix>/<YYYY-MM-DD>/`` for each arrival date of the interval (one LIST per day)."""
    files = []
    for day in interval.dates():
        files.extend(o for o in store.list(f"{prefix}/{day.isoformat()}/") if not o.key.endswith("/"))
    return files


# --------------------------------------------------------------------------------------- ingest
def ingest_landing(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """List and parse every landing file of the partition's interval, from every configured source.

    Files are read in (arrival date, key) order; their records keep (date, key, line), the order dedup
    uses. Files and lines that cannot be parsed are rejected with their reason.
    """
    started = time.perf_counter()
    config.domain(part.domain)
    landing = config.storage.landing_prefix
    files = []
    for source in config.ingest.sources:
        prefix = f"{landing}/{source.prefix_for(part.domain)}"
        for obj in list_interval_files(store, prefix=prefix, interval=part.interval):
            files.append((arrival_date_of(obj.key, prefix), obj, source))
    files.sort(key=lambda f: (f[0], f[1].key))

    raw_lines: list[bytes] = []
    rejections: list[dict] = []
    inputs = []
    file_problems = 0
    for day, obj, source in files:
        if obj.size > config.ingest.max_file_bytes:
            rejections.append(Rejection(obj.key, "parse", "file_too_large",
                                        f"{obj.size} bytes > ingest.max_file_bytes").to_dict())
            file_problems += 1
            continue
        parsed = parse_file(key=obj.key, data=store.get(obj.key), kind=source.kind, encodings=config.ingest.encodings)
        if source.kind == "feedback":
            # Feedback files hold every domain; lines and files that belong to no domain are
            # quarantined once, by route_feedback, not by every domain.
            records = [(n, r) for n, r in parsed.records if r.get("domain") == part.domain]
            if not records:
                continue
        else:
            records = parsed.records
            if parsed.file_error:
                rejections.append(parsed.file_error.to_dict())
                file_problems += 1
                continue
            rejections.extend(r.to_dict() for r in parsed.rejections)
        inputs.append({"key": obj.key, "etag": obj.etag, "size": obj.size, "source": source.name,
                       "encoding": parsed.encoding or None})
        iso = day.isoformat()
        for line, raw in records:
            raw_lines.append(json.dumps({"d": iso, "k": obj.key, "l": line, "s": source.name, "t": source.kind, "r": raw},
                                        ensure_ascii=False).encode("utf-8"))
    raw_key = part.staging(config, "raw.jsonl")
    store.put(raw_key, b"\n".join(raw_lines) + (b"\n" if raw_lines else b""))
    store.put(part.staging(config, "rejected.ingest.jsonl"), jsonl_bytes(rejections))
    result = {
        "domain": part.domain, "interval": part.interval.name, "run_key": part.run_key,
        "raw": raw_key, "inputs": inputs,
        "files": {"read": len(inputs), "quarantined": file_problems},
        "records_in": len(raw_lines) + sum(1 for r in rejections if "#" in r["source_uri"]),
        "parsed": len(raw_lines), "rejected": len(rejections),
        "seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(store, part.staging(config, "ingest.json"), result)
    log.info("ingest %s %s: %d files, %d records parsed, %d rejected", part.domain, part.interval.name,
             len(inputs), len(raw_lines), len(rejections))
    return result


def route_feedback(*, config: PipelineConfig, store: ObjectStore, interval: Interval, run_key: str = "manual") -> dict:
    """Quarantine feedback that reaches no domain (unparseable files/lines, unknown domain).

    Each domain's ``ingest_landing`` takes its own feedback records; this step accounts for the rest,
    so feedback counts reconcile too: in = routed (per domain) + quarantined.
    """
    routed: Counter[str] = Counter()
    rejections: list[dict] = []
    for source in (s for s in config.ingest.sources if s.kind == "feedback"):
        prefix = f"{config.storage.landing_prefix}/{source.prefix_for('')}".rstrip("/")
        for obj in list_interval_files(store, prefix=prefix, interval=interval):
            parsed = parse_file(key=obj.key, data=store.get(obj.key), kind="feedback", encodings=config.ingest.encodings)
            if parsed.file_error:
                rejections.append(parsed.file_error.to_dict())
                continue
            rejections.extend(r.to_dict() for r in parsed.rejections)
            for line, raw in parsed.records:
                domain = raw.get("domain")
                if isinstance(domain, str) and domain in config.domains:
                    routed[domain] += 1
                else:
                    rejections.append(Rejection(f"{obj.key}#L{line}", "route", "unknown_domain",
                                                f"domain {domain!r} is not configured",
                                                json.dumps(raw, ensure_ascii=False)[:4096]).to_dict())
    qkey = f"{config.storage.quarantine_prefix}/feedback/{interval.name}/unrouted.jsonl"
    body = jsonl_bytes(rejections)
    store.put(qkey, body)
    result = {"interval": interval.name, "routed": dict(sorted(routed.items())), "quarantined": len(rejections),
              "quarantine": qkey, "reasons": dict(sorted(Counter(r["reason"] for r in rejections).items()))}
    _put_json(store, f"{config.storage.quarantine_prefix}/feedback/{interval.name}/manifest.json", result)
    return result


# ---------------------------------------------------------------------------------- standardize
def standardize_records(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Map every parsed record to the curated JSON Schema; reject failures with the failing rule."""
    from pipelines.standardize import RawRecord, schema_version, standardize_record, to_row

    started = time.perf_counter()
    rows: list[dict] = []
    rejections: list[dict] = []
    for line in store.get(part.staging(config, "raw.jsonl")).splitlines():
        env = json.loads(line)
        item = RawRecord(arrival_date=env["d"], key=env["k"], line=env["l"], source=env["s"], kind=env["t"], raw=env["r"])
        out = standardize_record(item, domain=part.domain, train_min_rating=config.feedback.train_min_rating,
                                 review_max_rating=config.feedback.review_max_rating)
        if isinstance(out, Rejection):
            rejections.append(out.to_dict())
        else:
            rows.append(to_row(out))
    key = part.staging(config, "standardized.parquet")
    store.put(key, parquet_bytes(rows))
    store.put(part.staging(config, "rejected.standardize.jsonl"), jsonl_bytes(rejections))
    result = {"standardized": key, "kept": len(rows), "rejected": len(rejections), "schema_version": schema_version(),
              "seconds": round(time.perf_counter() - started, 3)}
    _put_json(store, part.staging(config, "standardize.json"), result)
    return result


# ---------------------------------------------------------------------------------- governance
# Steps between standardize and dedup. Each reads the previous step's rows and writes its own, so a
# step can be added to the chain (and to the DAG) without touching the others.
GOVERNED = "filtered"  # the rows dedup reads: the last governance step's output
GOVERNANCE_STEPS = ("cleaned", "masked", "filtered")
CURATED = "labelled.parquet"  # what validate_batch checks and publish_partition publishes


def _row_step(config: PipelineConfig, store: ObjectStore, part: PartitionRef, *, name: str, source: str,
              apply) -> dict:
    started = time.perf_counter()
    rows = read_parquet_rows(store.get(part.staging(config, f"{source}.parquet")))
    kept, rejections, counts = apply(rows)
    key = part.staging(config, f"{name}.parquet")
    store.put(key, parquet_bytes(list(kept)))
    store.put(part.staging(config, f"rejected.{name}.jsonl"), jsonl_bytes([r.to_dict() for r in rejections]))
    result = {name: key, "in": len(rows), "kept": len(kept), "rejected": len(rejections), "counts": counts,
              "seconds": round(time.perf_counter() - started, 3)}
    _put_json(store, part.staging(config, f"{name}.json"), result)
    log.info("%s %s %s: in=%d kept=%d rejected=%d", name, part.domain, part.interval.name, len(rows), len(kept),
             len(rejections))
    return result


def clean_text(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Strip HTML and control characters, apply the domain's regex rules and language filter."""
    from pipelines.clean import clean_records
    from pipelines.governance import domain_rules

    rules = domain_rules(config, part.domain)

    def apply(rows):
        result = clean_records(rows, config=rules.clean)
        return result.rows, result.rejections, result.counts

    return _row_step(config, store, part, name="cleaned", source="standardized", apply=apply)


def mask_pii(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Mask phones, emails, ID and bank card numbers, addresses: same value, same token in a partition."""
    from pipelines.governance import domain_rules
    from pipelines.pii import mask_records

    rules = domain_rules(config, part.domain)

    def apply(rows):
        result = mask_records(rows, config=rules.pii)
        return result.rows, (), {**result.counts, "records_with_pii": result.pii_found}

    return _row_step(config, store, part, name="masked", source="cleaned", apply=apply)


def filter_sensitive(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Match the sensitive-word lexicon; drop, mask or flag per the domain's policy."""
    from pipelines.governance import domain_rules, lexicon_for
    from pipelines.sensitive import filter_records

    rules = domain_rules(config, part.domain)
    lexicon = lexicon_for(rules.sensitive_lists)

    def apply(rows):
        result = filter_records(rows, lexicon=lexicon, policy=rules.sensitive)
        kept = [dict(r, sensitive_flags=",".join(result.flagged[r["id"]])) if r["id"] in result.flagged else r
                for r in result.rows]
        counts = {**result.counts, "categories": result.categories, "policy": rules.sensitive.default,
                  "lexicon_sha256": lexicon.digest}
        return kept, result.rejections, counts

    return _row_step(config, store, part, name="filtered", source="masked", apply=apply)


# --------------------------------------------------------------------------------------- dedup
def _index(config: PipelineConfig, store: ObjectStore, domain: str):
    from pipelines.dedup.index import HashIndex

    return HashIndex(store=store, prefix=f"{config.storage.index_prefix}/{domain}",
                     buckets=config.dedup.buckets, compact_after=config.dedup.compact_after)


def _dedup(config: PipelineConfig, store: ObjectStore, part: PartitionRef, rows: list[dict], index=None):
    """Packed content hashes (32 bytes per row), the dedup decision and the index used."""
    from pipelines.dedup import dedup_partition

    index = index or _index(config, store, part.domain)
    packed, decision = dedup_partition(texts=[r["text"] for r in rows], arrival_dates=[r["arrival_date"] for r in rows],
                                       start=part.interval.start, end=part.interval.end, index=index)
    return packed, decision, index


def find_duplicates(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """SHA-256 exact dedup of the partition against itself and the persistent index.

    Nothing is written to the index here: the partition's signature set is staged and added by
    ``publish_partition``, so a partition that fails validation never hides later records.
    """
    from pipelines.dedup.index import encode_segment

    started = time.perf_counter()
    rows = read_parquet_rows(store.get(part.staging(config, f"{GOVERNED}.parquet")))
    packed, decision, index = _dedup(config, store, part, rows)
    hexes = packed.hex()
    for i, row in enumerate(rows):
        row["content_sha256"] = hexes[64 * i:64 * i + 64]
    kept_rows = [rows[i] for i in decision.kept]
    # Ids must be unique in a partition; a different text under an id already kept is a conflict.
    seen_ids: set[str] = set()
    conflicts: list[dict] = []
    unique_rows = []
    for row in kept_rows:
        if row["id"] in seen_ids:
            conflicts.append(Rejection(row["source_uri"], "dedup", "id_conflict",
                                       f"id {row['id']!r} already used by another record in this partition",
                                       row["text"][:4096]).to_dict())
            continue
        seen_ids.add(row["id"])
        unique_rows.append(row)
    duplicates = [
        {"id": rows[i]["id"], "source_uri": rows[i]["source_uri"], "content_sha256": rows[i]["content_sha256"],
         "reason": reason, "first_seen": from_day_number(first_day).isoformat()}
        for i, reason, first_day in decision.duplicates
    ]
    store.put(part.staging(config, "deduplicated.parquet"), parquet_bytes(unique_rows))
    store.put(part.staging(config, "duplicates.jsonl"), jsonl_bytes(duplicates))
    store.put(part.staging(config, "rejected.dedup.jsonl"), jsonl_bytes(conflicts))
    store.put(part.staging(config, "signatures.seg"), encode_segment(decision.entries))
    result = {
        "deduplicated": part.staging(config, "deduplicated.parquet"), "kept": len(unique_rows),
        "duplicate": len(duplicates), "rejected": len(conflicts),
        "displaced": [from_day_number(d).isoformat() for d in decision.displaced_days],
        "index": {"buckets_touched": index.stats.buckets_touched, "segments_read": index.stats.segments_read},
        "seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(store, part.staging(config, "dedup.json"), result)
    return result


# ---------------------------------------------------------------------------------------- label
def auto_label(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Label unlabelled records with the domain's labeller; reviewed labels (imported with
    ``python -m pipelines review import``) win over predictions; stage the review queue.

    At least ceil(share * n) of the auto-labelled records, plus every low-confidence one, go to the
    queue (seeded by the partition, so a re-run picks the same ones). The queue is written at publish.
    """
    from pipelines.label.registry import fetch_labeller
    from pipelines.review.queue import apply_reviews, build_queue, load_reviews
    from pipelines.review.sampling import ReviewConfig

    started = time.perf_counter()
    settings = {"share": 0.15, "low_confidence": 0.6, **dict(config.governance.label or {}),
                **dict(config.domain(part.domain).governance.get("label") or {})}
    review = ReviewConfig(share=float(settings["share"]), low_confidence=float(settings["low_confidence"]))
    name = settings.get("labeller", part.domain if config.domain(part.domain).task == "classification" else None)
    rows = read_parquet_rows(store.get(part.staging(config, "deduplicated.parquet")))
    for row in rows:
        if row["label"] is not None:
            row["label_source"] = "source"
    todo = [r for r in rows if r["label"] is None and r["source"] != "feedback"]
    labeller, pointer = fetch_labeller(store, name) if (name and todo) else (None, None)
    queue: list[dict] = []
    if labeller is not None:
        predictions = labeller.predict([r["text"] for r in todo])
        for row, (label, confidence) in zip(todo, predictions):
            row.update(label=label, label_source="predicted", label_confidence=round(float(confidence), 4))
        queue = build_queue(todo, predictions, domain=part.domain, partition_key=f"{part.domain}/{part.interval.name}",
                            config=review)
    reviews = load_reviews(store, domain=part.domain, interval=part.interval.name)
    stats = None
    if reviews:
        reviewed_ids = {str(i) for i in reviews}
        rows, stats = apply_reviews(rows, reviews)
        for row in rows:
            if row["id"] in reviewed_ids:
                row["label_source"] = "reviewed"
    store.put(part.staging(config, "labelled.parquet"), parquet_bytes(rows))
    store.put(part.staging(config, "review_queue.jsonl"), jsonl_bytes(queue))
    result = {
        "labelled": part.staging(config, "labelled.parquet"), "in": len(rows), "kept": len(rows),
        "counts": {"unlabelled": len(todo), "predicted": len(todo) if labeller else 0, "queued": len(queue),
                   "low_confidence": sum(1 for q in queue if q["reason"] == "low_confidence"),
                   "reviewed": stats.reviewed if stats else 0,
                   "reviewed_share": stats.share_reviewed if stats else 0.0,
                   "agreement": stats.agreement if stats else None},
        "labeller": {"name": name, "version": pointer["version"], "labels": pointer.get("labels")} if pointer else
                    {"name": name, "version": None, "note": "no labeller published: records keep their labels"},
        "seconds": round(time.perf_counter() - started, 3),
    }
    _put_json(store, part.staging(config, "labelled.json"), result)
    return result


# ------------------------------------------------------------------------------------ validate
def validate_batch(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Run the Great Expectations suite on the deduplicated batch; raise ``ValidationFailed`` if it fails.

    The report is written next to the partition's quarantine so on-call can see what failed.
    """
    import io

    import pyarrow.parquet as pq

    from pipelines.validate import validate_batch as run_suite

    table = pq.read_table(io.BytesIO(store.get(part.staging(config, CURATED))))
    if table.num_rows == 0:
        result = {"success": True, "skipped": "empty batch", "rows": 0}
        _put_json(store, part.staging(config, "validation.json"), result)
        return result
    report = run_suite(table=table, suite_path=config.validation.suite, parameters={"domains": [part.domain]})
    result = report.to_dict()
    _put_json(store, part.staging(config, "validation.json"), result)
    if not report.success:
        failed_key = f"{part.quarantine(config)}/validation-failed-{part.run_key}.json"
        _put_json(store, failed_key, result)
        raise ValidationFailed(
            f"{part.domain} {part.interval.name}: suite {report.suite_name} failed "
            f"({len(report.failed)} expectation(s): {', '.join(f['expectation'] for f in report.failed)}); "
            f"partition NOT published; report: {store.uri(failed_key)}"
        )
    return result


# ------------------------------------------------------------------------------------- publish
def _version_files(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    data = store.get(part.staging(config, CURATED))
    rejected = []
    for step in ("ingest", "standardize", *GOVERNANCE_STEPS, "dedup"):
        try:
            rejected.extend(_get_jsonl(store, part.staging(config, f"rejected.{step}.jsonl")))
        except NotFound:
            pass
    duplicates = _get_jsonl(store, part.staging(config, "duplicates.jsonl"))
    return {"data": data, "quarantine": jsonl_bytes(rejected), "duplicates": jsonl_bytes(duplicates),
            "rejected": rejected, "duplicate_rows": duplicates}


def publish_partition(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, who: str = "pipeline") -> dict:
    """Write the partition version, add its signatures to the index, then commit (last).

    Idempotent: if the newest commit already names this exact version, nothing is written. After the
    commit the index is read again: partitions that this one displaced (an earlier week ingested after
    later ones), or a concurrent earlier week that displaced this one, are returned for re-publication.
    """
    from pipelines.dedup.index import decode_segment
    from pipelines.standardize import schema_version

    ingest = _get_json(store, part.staging(config, "ingest.json"))
    standardize = _get_json(store, part.staging(config, "standardize.json"))
    dedup = _get_json(store, part.staging(config, "dedup.json"))
    validation = _get_json(store, part.staging(config, "validation.json"))
    if not validation.get("success"):
        raise ValidationFailed(f"{part.domain} {part.interval.name}: validation did not pass; not publishing")
    files = _version_files(config, store, part)
    prefix = part.curated(config)
    records_in = ingest["records_in"]
    kept = dedup["kept"]
    duplicate = dedup["duplicate"]
    quarantined = sum(1 for r in files["rejected"] if "#" in r["source_uri"])
    if records_in != kept + duplicate + quarantined:
        raise RuntimeError(f"counts do not reconcile for {part.domain} {part.interval.name}: "
                           f"in={records_in} kept={kept} duplicate={duplicate} quarantined={quarantined}")
    if records_in == 0 and not files["rejected"]:
        log.info("publish %s %s: no input in this interval, nothing to publish", part.domain, part.interval.name)
        return {"published": False, "reason": "no input", "domain": part.domain, "interval": part.interval.name,
                "republish": []}
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
    previous = latest_commit(store, prefix)
    if previous and previous.version == version:
        log.info("publish %s %s: version %s already committed (#%d), nothing to do", part.domain,
                 part.interval.name, version, previous.n)
        republish = _post_commit_check(config, store, part, kept_rows, signatures)
        return {"published": False, "reason": "unchanged", "version": version, "commit": previous.key,
                "domain": part.domain, "interval": part.interval.name, "republish": republish, "counts": manifest["counts"]}
    # Data first, then the index, then the commit record: a reader never sees a partial partition.
    store.put(manifest["files"]["data"], files["data"])
    store.put(manifest["files"]["quarantine"], files["quarantine"])
    store.put(manifest["files"]["duplicates"], files["duplicates"])
    store.put(f"{prefix}/v-{version}/hashes.bin", _kept_hashes(kept_rows))
    _write_review_queue(config, store, part, version)
    store.put(f"{prefix}/v-{version}/manifest.json", canonical_json(manifest))
    index = _index(config, store, part.domain)
    index.add(decode_segment(signatures), tag=part.interval.start.isoformat())
    changes = _changes(store, prefix, previous, kept_rows, files["duplicate_rows"], files["rejected"])
    commit = commit_version(store, prefix, {
        "version": version, "manifest": f"{prefix}/v-{version}/manifest.json",
        "previous_version": previous.version if previous else None,
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "committed_by": who, "run_key": part.run_key, "changes": changes,
    })
    log.info("publish %s %s: committed version %s as %s (in=%d kept=%d dup=%d quarantined=%d)", part.domain,
             part.interval.name, version, commit.key, records_in, kept, duplicate, quarantined)
    republish = _post_commit_check(config, store, part, kept_rows, signatures)
    _cleanup_staging(config, store, part)
    return {"published": True, "version": version, "commit": commit.key, "domain": part.domain,
            "interval": part.interval.name, "counts": manifest["counts"], "republish": republish}


def _step_counts(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict:
    """Counts of every step of the chain, in order (deterministic: no timings)."""
    out = {}
    for name in ("ingest", "standardize", *GOVERNANCE_STEPS, "dedup", "labelled"):
        try:
            step = _get_json(store, part.staging(config, f"{name}.json"))
        except NotFound:
            continue
        out[name] = {k: step[k] for k in ("in", "parsed", "kept", "rejected", "duplicate", "counts", "records_in",
                                          "labeller") if k in step}
    return out


def _write_review_queue(config: PipelineConfig, store: ObjectStore, part: PartitionRef, version: str) -> None:
    from pipelines.review.queue import write_queue

    try:
        queue = _get_jsonl(store, part.staging(config, "review_queue.jsonl"))
        label = _get_json(store, part.staging(config, "labelled.json"))
    except NotFound:
        return
    if queue:
        write_queue(store, domain=part.domain, interval=part.interval.name, version=version, items=queue,
                    labels=label["labeller"].get("labels") or sorted({q["predicted_label"] for q in queue}),
                    labeller=label["labeller"])


def _kept_hashes(rows: list[dict]) -> bytes:
    """Sorted kept content hashes (32 bytes each): what a backfill of an earlier week checks against."""
    return b"".join(sorted(bytes.fromhex(r["content_sha256"]) for r in rows))


def _changes(store: ObjectStore, prefix: str, previous, kept_rows: list[dict], duplicates: list[dict],
             rejected: list[dict]) -> dict:
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


def _post_commit_check(config: PipelineConfig, store: ObjectStore, part: PartitionRef, kept_rows: list[dict],
                       signatures: bytes) -> list[dict]:
    """After committing, list the partitions whose kept set may now be stale.

    * Later committed partitions that kept a hash this partition holds (an earlier week ingested
      after later ones, i.e. a backfill): found by intersecting with their ``hashes.bin``. Forward
      weekly runs have no later partitions, so this costs nothing on the normal path.
    * This partition itself, if the index now shows an earlier owner for a hash it kept (a concurrent
      run of an earlier week added its signatures after our lookup).
    Every run adds its signatures before this check, so of two concurrent runs at least one sees the
    other: a displaced partition is always found by someone.
    """
    import numpy as np

    from pipelines.dedup.index import decode_segment

    targets = []
    if kept_rows:
        index = _index(config, store, part.domain)
        kept = np.array([bytes.fromhex(r["content_sha256"]) for r in kept_rows], dtype="S32")
        if (index.lookup(kept) < day_number(part.interval.start)).any():
            targets.append({"domain": part.domain, "interval": part.interval.name,
                            "why": "an earlier partition now owns some records"})
    mine = decode_segment(signatures)["h"]
    for name in partition_names(store, config.storage.curated_prefix, part.domain):
        interval = Interval.parse(name)
        if interval.start < part.interval.end:
            continue
        prefix = partition_prefix(config.storage.curated_prefix, part.domain, name)
        commit = latest_commit(store, prefix)
        if commit is None:
            continue
        theirs = np.frombuffer(store.get(f"{prefix}/v-{commit.version}/hashes.bin"), dtype="S32")
        if len(theirs) and np.isin(mine, theirs).any():
            targets.append({"domain": part.domain, "interval": name,
                            "why": f"some of its records first arrived in {part.interval.name}"})
    return targets


def run_results_prefix(config: PipelineConfig, interval: Interval, run_key: str) -> str:
    return f"{config.storage.staging_prefix}/_runs/{interval.name}/{run_key}/"


def record_result(config: PipelineConfig, store: ObjectStore, part: PartitionRef, result: dict) -> None:
    """Keep a partition's publish result for the run's last step (outside the partition's staging)."""
    _put_json(store, f"{run_results_prefix(config, part.interval, part.run_key)}{part.domain}.json", result)


def collect_results(config: PipelineConfig, store: ObjectStore, interval: Interval, run_key: str) -> dict[str, dict]:
    """The publish results a run recorded, by domain (a failed domain has none)."""
    prefix = run_results_prefix(config, interval, run_key)
    return {o.key[len(prefix):-5]: _get_json(store, o.key) for o in store.list(prefix) if o.key.endswith(".json")}


def _cleanup_staging(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> None:
    for obj in list(store.list(part.staging(config, ""))):
        store.delete(obj.key)


# --------------------------------------------------------------------------------- whole flows
def process_partition(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, who: str = "pipeline") -> dict:
    """Run every step of one partition in this process (re-publication, CLI, tests)."""
    ingest = ingest_landing(config=config, store=store, part=part)
    standardize_records(config=config, store=store, part=part)
    clean_text(config=config, store=store, part=part)
    mask_pii(config=config, store=store, part=part)
    filter_sensitive(config=config, store=store, part=part)
    dedup = find_duplicates(config=config, store=store, part=part)
    auto_label(config=config, store=store, part=part)
    validate_batch(config=config, store=store, part=part)
    result = publish_partition(config=config, store=store, part=part, who=who)
    result["stages"] = {"ingest_seconds": ingest["seconds"], "dedup_seconds": dedup["seconds"]}
    return result


def republish_displaced(*, config: PipelineConfig, store: ObjectStore, targets: list[dict], run_key: str,
                        max_rounds: int = 5) -> list[dict]:
    """Re-publish the partitions a run displaced, until nothing more changes."""
    done: list[dict] = []
    pending = {(t["domain"], t["interval"]): t for t in targets}
    for _round in range(max_rounds):
        if not pending:
            return done
        next_pending: dict = {}
        for (domain, name), target in sorted(pending.items()):
            part = PartitionRef.for_run(domain=domain, interval=Interval.parse(name), run_id=f"{run_key}-republish")
            log.info("re-publishing %s %s: %s", domain, name, target.get("why"))
            result = process_partition(config=config, store=store, part=part, who=f"republish:{run_key}")
            done.append({"domain": domain, "interval": name, "why": target.get("why"),
                         "published": result["published"], "version": result.get("version")})
            for t in result.get("republish", []):
                if (t["domain"], t["interval"]) != (domain, name) or t.get("why", "").startswith("an earlier"):
                    next_pending[(t["domain"], t["interval"])] = t
        pending = next_pending
    raise RuntimeError(f"re-publication did not settle after {max_rounds} rounds: {sorted(pending)}")
