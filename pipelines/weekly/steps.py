"""The steps of one partition's chain, each one Airflow task of ``dags/weekly_ingest.py``.

``ingest_landing`` parses the interval's landing files; every later step reads the rows at the ``key``
the previous step returned, applies its logic and writes its own rows, report and rejections through
one read-apply-write helper (``Step``). ``CHAIN`` is the order, used by ``process_partition`` and by
``publish_partition`` (which quarantine files and step reports a version holds).

Adding a governance step is one function decorated with ``@step("<name>")`` and one line in
``GOVERNANCE``: it runs per shard, in the DAG's ``govern_shard`` task (a step placed before mask_pii
runs in ``clean_shard``; ``pipelines.weekly.shards``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from pipelines.clean import clean_records
from pipelines.code.ingest import parse_landing, report_snapshot
from pipelines.config import PipelineConfig
from pipelines.governance import domain_rules, lexicon_for
from pipelines.ingest.parse import FILE, RECORD, Rejection, is_record, parse_file
from pipelines.partition import Interval, arrival_date_of
from pipelines.pii import PiiMapping, mask_records
from pipelines.release_requests import execute_release_requests
from pipelines.sensitive import filter_records
from pipelines.serialize import get_json, get_jsonl, jsonl_bytes, put_json
from pipelines.standardize import RawRecord, schema_version, standardize_record, to_row
from pipelines.storage import NotFound, ObjectStore
from pipelines.validate import validate_batch as run_suite
from pipelines.weekly.batches import JsonlFile, Progress, download, iter_jsonl_batches, log, upload, work_folder
from pipelines.weekly.chain import Applied, Apply, Step, step  # noqa: F401  (Step: the chain's step type)
from pipelines.weekly.dedup_step import DedupStep
from pipelines.weekly.labels import AutoLabelStep
from pipelines.weekly.layout import PartitionRef, find_misplaced, list_interval_files
from pipelines.weekly.parts import name_parts, sibling, staged_parts
from pipelines.weekly.shardplan import PII_TOKENS, ShardFiles, load_numbering
from pipelines.weekly.results import FeedbackRouted, IngestResult, ValidationResult


# --------------------------------------------------------------------------------------- ingest
def _execute_releases(config: PipelineConfig, store: ObjectStore, domain: str, interval: Interval,
                      run_key: str) -> list[dict]:
    """Execute a partition's pending release requests; what each became, for the step's report."""
    return [{"request": r.key, "who": r.who, "ids": list(r.ids), **r.outcome}
            for r in execute_release_requests(config=config, store=store, domain=domain, interval=interval,
                                              run_key=run_key)]


PLAN = "ingest-plan.json"


def _files_key(part: PartitionRef, config: PipelineConfig, group: int, name: str) -> str:
    """Where group ``group`` of a week read by several ``ingest_files`` tasks stages ``name``."""
    return part.staging(config, f"files-{group:05d}/{name}")


def group_files(sizes: list[int], *, shard_bytes: int) -> list[list[int]]:
    """The landing files (their sizes, in reading order) of each ``ingest_files`` task: consecutive files
    while their bytes fit in ``shard_bytes`` (a larger file is a group of its own; 0: one group)."""
    groups: list[list[int]] = [[]]
    total = 0
    for i, size in enumerate(sizes):
        if shard_bytes > 0 and groups[-1] and total + size > shard_bytes:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def plan_ingest(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict[str, Any]:
    """The part of ``ingest_landing`` that runs once per partition (the DAG's ``ingest_landing`` task):
    execute the partition's pending release requests, list its landing files in (arrival date, key)
    order, find the misplaced ones, and cut the list into the groups that ``ingest_files`` tasks parse
    (``ingest.shard_bytes`` of landing files each). Stages and returns the plan."""
    started = time.perf_counter()
    config.domain(part.domain)
    releases = _execute_releases(config, store, part.domain, part.interval, part.run_key)
    landing = config.storage.landing_prefix
    files = []
    misplaced: list[str] = []
    for source in config.ingest.sources:
        prefix = f"{landing}/{source.prefix_for(part.domain)}"
        for obj in list_interval_files(store, prefix=prefix, interval=part.interval):
            files.append((arrival_date_of(obj.key, prefix), obj, source))
        if source.kind != "feedback":  # feedback holds every domain: route_feedback reports its own
            misplaced.extend(find_misplaced(store, prefix=prefix))
    files.sort(key=lambda f: (f[0], f[1].key))
    if misplaced:
        log.warning("ingest %s: %d landing file(s) outside any <YYYY-MM-DD>/ folder are not read (move them "
                    "into their arrival date's folder): %s", part.domain, len(misplaced), ", ".join(misplaced[:20]))
    plan = {"files": [{"day": day.isoformat(), "key": obj.key, "etag": obj.etag, "size": obj.size,
                       "source": source.name} for day, obj, source in files],
            "groups": group_files([obj.size for _, obj, _ in files], shard_bytes=config.ingest.shard_bytes),
            "misplaced": misplaced, "releases": releases, "seconds": round(time.perf_counter() - started, 3)}
    put_json(store, part.staging(config, PLAN), plan)
    return plan


def ingest_files(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, group: int) -> dict[str, Any]:
    """Parse one group of the partition's landing files (the DAG's ``ingest_files`` task, per group) and
    stage its records as shards of at most ``ingest.shard_records`` (``ShardFiles``), its rejections and
    its counts. A partition read as one group stages under the partition's own names (one shard: the
    partition's ``raw.jsonl``)."""
    started = time.perf_counter()
    plan = get_json(store, part.staging(config, PLAN))
    single = len(plan["groups"]) == 1
    sources = {s.name: s for s in config.ingest.sources}
    progress = Progress("ingest", f"{part.label}" + ("" if single else f" files {group + 1}/{len(plan['groups'])}"))
    inputs = []
    shards: list[str] = []
    file_problems = rows_seen = parsed_records = record_rejections = 0

    def staged(k: int | None, path) -> None:  # a full shard goes to staging
        key = part.shard_ref(k).staging(config, "raw.jsonl") if single else \
            _files_key(part, config, group, f"raw-{k or 0:05d}.jsonl")
        shards.append(upload(store, key, path))
        path.unlink()

    # Records go to local shard files line by line (one landing file in memory at a time, at most
    # ingest.max_file_bytes), each uploaded once full: memory and local disk do not grow with the week.
    with work_folder("ingest") as folder, \
            ShardFiles(folder, shard_records=config.ingest.shard_records, done=staged) as raw, \
            JsonlFile(folder / "rejected.jsonl") as rejected:

        def reject(rejection: dict) -> None:
            nonlocal record_rejections
            rejected.write((rejection,))
            record_rejections += is_record(rejection)

        for item in (plan["files"][i] for i in plan["groups"][group]):
            source = sources[item["source"]]
            if item["size"] > config.ingest.max_file_bytes:
                reject(Rejection(item["key"], "parse", "file_too_large",
                                 f"{item['size']} bytes > ingest.max_file_bytes", kind=FILE).to_dict())
                file_problems += 1
                continue
            # A code domain's snapshot is read, classified and scrubbed by pipelines.code; else parse_file.
            parsed = parse_landing(config=config, domain=part.domain, key=item["key"], data=store.get(item["key"]),
                                   kind=source.kind, encodings=config.ingest.encodings)
            report_snapshot(store, prefix=part.quarantine(config), run_key=part.run_key, parsed=parsed)
            if parsed.unaccounted:
                raise RuntimeError(f"{item['key']}: the reader saw {parsed.rows} rows but the parser accounted for "
                                   f"{len(parsed.records) + len(parsed.rejections)}; not ingesting a partial file")
            if source.kind == "feedback":
                # Feedback files hold every domain; lines and files that belong to no domain are
                # quarantined once, by route_feedback, not by every domain.
                records = [(n, r) for n, r in parsed.records if r.get("domain") == part.domain]
                if not records:
                    continue
                rows_seen += len(records)
            else:
                records = parsed.records
                if parsed.file_error:
                    reject(parsed.file_error.to_dict())
                    file_problems += 1
                    continue
                for rejection in parsed.rejections:
                    reject(rejection.to_dict())
                rows_seen += parsed.rows
            inputs.append({"key": item["key"], "etag": item["etag"], "size": item["size"], "source": source.name,
                           "encoding": parsed.encoding or None})
            raw.begin_file(len(records))
            for line, record in records:
                raw.write(json.dumps({"d": item["day"], "k": item["key"], "l": line, "s": source.name,
                                      "t": source.kind, "r": record}, ensure_ascii=False).encode("utf-8") + b"\n")
            parsed_records += len(records)
            progress.add(len(records), item["size"])
            del parsed, records
        if rows_seen != parsed_records + record_rejections:
            raise RuntimeError(f"{part.label}: readers saw {rows_seen} rows, ingest accounted "
                               f"for {parsed_records} records + {record_rejections} rejections")
        raw.close()
        rejected.close()
        upload(store, part.staging(config, "rejected.ingest.jsonl") if single else
               _files_key(part, config, group, "rejected.ingest.jsonl"), rejected.path)
    report = {"inputs": inputs, "quarantined": file_problems, "records_in": rows_seen, "parsed": parsed_records,
              "rejected": rejected.lines, "shards": shards, "seconds": round(time.perf_counter() - started, 3)}
    put_json(store, part.staging(config, "ingest.json") if single else
             _files_key(part, config, group, "ingest.json"), report)
    progress.done()
    return report


def finish_ingest(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> IngestResult:
    """The partition's ingest report from its groups' (the DAG's ``plan_shards`` task): counts added, the
    inputs and shards in order; names the parts of its rejections.

    Raises:
        RuntimeError: a group has no report (its ``ingest_files`` task failed: see its log).
    """
    plan = get_json(store, part.staging(config, PLAN))
    groups = len(plan["groups"])
    keys = [part.staging(config, "ingest.json")] if groups == 1 else \
        [_files_key(part, config, g, "ingest.json") for g in range(groups)]
    missing = [g + 1 for g, key in enumerate(keys) if not store.exists(key)]
    if missing:
        raise RuntimeError(f"{part.label}: landing file group(s) {missing} of {groups} were not ingested (see their "
                           "ingest_files logs); run the partition again")
    reports = [get_json(store, key) for key in keys]
    if groups > 1:
        name_parts(store, part.staging(config, "rejected.ingest.jsonl"),
                   [_files_key(part, config, g, "rejected.ingest.jsonl") for g in range(groups)])
    shards = [k for r in reports for k in r["shards"]]
    result = IngestResult(
        key=shards[0], domain=part.domain, interval=part.interval.name, run_key=part.run_key,
        inputs=[i for r in reports for i in r["inputs"]],
        files={"read": sum(len(r["inputs"]) for r in reports), "quarantined": sum(r["quarantined"] for r in reports),
               "misplaced": len(plan["misplaced"])},
        records_in=sum(r["records_in"] for r in reports), parsed=sum(r["parsed"] for r in reports),
        rejected=sum(r["rejected"] for r in reports),
        seconds=round(plan["seconds"] + sum(r["seconds"] for r in reports), 3), misplaced=plan["misplaced"],
        releases=plan["releases"], shards=shards if len(shards) > 1 else ())
    put_json(store, part.staging(config, "ingest.json"), result.to_dict())
    if len(shards) > 1:
        log.info("ingest %s: %d records in %d shards (ingest.shard_records %d, ingest.shard_bytes %d)", part.label,
                 result.parsed, len(shards), config.ingest.shard_records, config.ingest.shard_bytes)
    log.info("ingest %s %s: %d files, %d records parsed, %d rejected", part.domain, part.interval.name,
             len(result.inputs), result.parsed, result.rejected)
    return result


def ingest_landing(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> IngestResult:
    """List and parse every landing file of the partition's interval, from every configured source.

    Files are read in (arrival date, key) order; their records keep (date, key, line), the order dedup
    uses. Files and lines that cannot be parsed are rejected with their reason. ``records_in`` counts
    the rows each reader saw (records + record rejections), so a row no parser emitted still has to
    be accounted for. Files of the domain's sources outside any ``<YYYY-MM-DD>/`` folder are reported
    (``misplaced``, a warning), never read.

    First it executes the partition's pending quarantine release requests (the console's; as this task's
    ``ingestion`` identity), so the records they release are listed and ingested by this very run; a request
    that fails is reported under ``releases`` and the partition runs anyway.

    ``plan_ingest``, ``ingest_files`` for each group of landing files, ``finish_ingest``, in this process
    (the DAG runs the groups as tasks of their own, on any worker).
    """
    plan = plan_ingest(config=config, store=store, part=part)
    for group in range(len(plan["groups"])):
        ingest_files(config=config, store=store, part=part, group=group)
    return finish_ingest(config=config, store=store, part=part)


def route_feedback(*, config: PipelineConfig, store: ObjectStore, interval: Interval,
                   run_key: str = "manual") -> FeedbackRouted:
    """Quarantine feedback that reaches no domain (unparseable files/lines, unknown domain).

    Each domain's ``ingest_landing`` takes its own feedback records; this step accounts for the rest,
    so feedback counts reconcile too: in = routed (per domain) + quarantined. It first executes pending
    release requests of quarantined feedback (``ingest_landing`` does the same for its domain).
    """
    releases = _execute_releases(config, store, "feedback", interval, run_key)
    routed: Counter[str] = Counter()
    rejections: list[dict] = []
    misplaced: list[str] = []
    for source in (s for s in config.ingest.sources if s.kind == "feedback"):
        prefix = f"{config.storage.landing_prefix}/{source.prefix_for('')}".rstrip("/")
        misplaced.extend(find_misplaced(store, prefix=prefix))
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
                                                json.dumps(raw, ensure_ascii=False)[:4096], kind=RECORD).to_dict())
    qkey = f"{config.storage.quarantine_prefix}/feedback/{interval.name}/unrouted.jsonl"
    store.put(qkey, jsonl_bytes(rejections))
    result = FeedbackRouted(interval=interval.name, routed=dict(sorted(routed.items())), quarantined=len(rejections),
                            quarantine=qkey, reasons=dict(sorted(Counter(r["reason"] for r in rejections).items())),
                            misplaced=misplaced, releases=releases)
    if misplaced:
        log.warning("feedback: %d landing file(s) outside any <YYYY-MM-DD>/ folder are not read: %s",
                    len(misplaced), ", ".join(misplaced[:20]))
    put_json(store, f"{config.storage.quarantine_prefix}/feedback/{interval.name}/manifest.json", result.to_dict())
    return result


# ---------------------------------------------------------------------------------- standardize
@step("standardize", output="standardized", read=iter_jsonl_batches)
def standardize_records(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Map every parsed record to the curated JSON Schema; reject failures with the failing rule."""

    def apply(envelopes: list[dict]) -> Applied:
        rows, rejections = [], []
        for env in envelopes:
            item = RawRecord(arrival_date=env["d"], key=env["k"], line=env["l"], source=env["s"], kind=env["t"],
                             raw=env["r"])
            out = standardize_record(item, domain=part.domain, train_min_rating=config.feedback.train_min_rating,
                                     review_max_rating=config.feedback.review_max_rating)
            if isinstance(out, Rejection):
                rejections.append(out)
            else:
                rows.append(to_row(out))
        return Applied(rows, rejections, extra={"schema_version": schema_version()})

    return apply


# ---------------------------------------------------------------------------------- governance
@step("cleaned")
def clean_text(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Strip HTML and control characters, apply the domain's regex rules and language filter."""
    rules = domain_rules(config, part.domain)

    def apply(rows: list[dict]) -> Applied:
        result = clean_records(rows, config=rules.clean)
        return Applied(result.rows, result.rejections, result.counts)

    return apply


@step("masked")
def mask_pii(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Mask phones, emails, ID and bank card numbers, addresses: same value, same token in a partition.

    The token map is the one partition-wide state (one entry per distinct value); rows stream through.
    A shard of a sharded week masks with the numbering made over every shard (``shards.number_pii``).
    """
    rules = domain_rules(config, part.domain)
    if part.shard is None:
        mapping = PiiMapping()
    else:
        with work_folder("pii-tokens") as folder:
            mapping = load_numbering(store, part.staging(config, PII_TOKENS), folder)

    def apply(rows: list[dict]) -> Applied:
        result = mask_records(rows, config=rules.pii, mapping=mapping)
        return Applied(result.rows, (), {**result.counts, "records_with_pii": result.pii_found})

    return apply


@step("filtered")
def filter_sensitive(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Match the sensitive-word lexicon; drop, mask or flag per the domain's policy."""
    rules = domain_rules(config, part.domain)
    lexicon = lexicon_for(rules.sensitive_lists)

    def apply(rows: list[dict]) -> Applied:
        result = filter_records(rows, lexicon=lexicon, policy=rules.sensitive)
        kept = [dict(r, sensitive_flags=",".join(result.flagged[r["id"]])) if r["id"] in result.flagged else r
                for r in result.rows]
        counts = {**result.counts, "categories": result.categories, "policy": rules.sensitive.default,
                  "lexicon_sha256": lexicon.digest}
        return Applied(kept, result.rejections, counts)

    return apply


# --------------------------------------------------------------------------------------- dedup
find_duplicates = DedupStep()


# ---------------------------------------------------------------------------------------- label
auto_label = AutoLabelStep()


# ---------------------------------------------------------------------------------------- chain
# The governance steps between standardize and dedup, in order: dedup hashes cleaned, masked text.
GOVERNANCE: tuple[Step, ...] = (clean_text, mask_pii, filter_sensitive)
# Every step after ingest_landing, in order: each reads the key the previous one returned.
CHAIN: tuple[Step, ...] = (standardize_records, *GOVERNANCE, find_duplicates, auto_label)


# ------------------------------------------------------------------------------------ validate
class ValidationFailed(RuntimeError):
    """The curated batch failed its expectation suite; the partition was not published."""


# Rows given to one Great Expectations run: measured ~40 KB of RSS per ~7.5 KB document inside GX (pandas
# frame + its checks), so ~0.4 GB for 10,000 of them.
VALIDATE_CHUNK_ROWS = 10_000
UNIQUE_COLUMNS = ("id", "content_sha256")


PART_REPORT = "validation.part.json"  # beside a part: the suite's report on its rows
PART_DIGESTS = "validation.digests"  # beside a part: a 32-byte digest of each row's id, then content_sha256


def validate_part(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                  chunk_rows: int = VALIDATE_CHUNK_ROWS) -> dict[str, Any]:
    """Run the suite on one part's labelled rows (``key``; ``part``: its shard, for the logs) in chunks of
    ``chunk_rows``, and stage the report (chunks merged) and the digests of its unique columns beside it,
    for ``validate_batch``. A part validated in this run already is not validated again."""
    import numpy as np
    import pyarrow.parquet as pq

    report_key, digests_key = sibling(key, PART_REPORT), sibling(key, PART_DIGESTS)
    if store.exists(report_key) and store.exists(digests_key):
        return get_json(store, report_key)
    params = {"domains": [part.domain]}
    suite = config.validation.suite
    progress = Progress("validate", part.label)
    reports: list[dict[str, Any]] = []
    digests: dict[str, list] = {c: [] for c in UNIQUE_COLUMNS}
    with work_folder("validate") as folder:
        path = download(store, key, folder)
        with pq.ParquetFile(path, pre_buffer=False) as pf:  # pre_buffer: see serialize.iter_parquet_batches
            for batch in pf.iter_batches(batch_size=chunk_rows):
                table = pa_table(batch)
                for column in UNIQUE_COLUMNS:
                    digests[column].append(_digests(table.column(column).to_pylist()))
                reports.append(run_suite(table=table, suite_path=suite, parameters=params).to_dict())
                progress.add(table.num_rows)
                del table, batch
    report = (_merge_reports(reports, chunk_rows=chunk_rows) if len(reports) > 1 else
              reports[0] if reports else {"success": True, "skipped": "empty batch", "rows": 0})
    body = b"".join(np.concatenate(digests[c]).tobytes() if digests[c] else b"" for c in UNIQUE_COLUMNS)
    store.put(digests_key, body)
    put_json(store, report_key, report)
    progress.done()
    return report


def pa_table(batch):  # noqa: ANN001, ANN201 - a pyarrow RecordBatch to a Table
    import pyarrow as pa

    return pa.Table.from_batches([batch])


def _digests(values: list) -> Any:
    import hashlib

    import numpy as np

    return np.array([hashlib.sha256(str(v).encode()).digest() for v in values], dtype="S32")


def _merge_reports(reports: list[dict[str, Any]], *, chunk_rows: int) -> dict[str, Any]:
    """Suite reports of consecutive chunks as one: it fails if one failed (each failed expectation kept
    once, from the first chunk where it failed); rows and seconds added."""
    merged: dict[str, Any] | None = None
    failed: dict[str, dict] = {}
    for report in reports:
        if report.get("skipped"):
            continue
        for entry in report["failed"]:
            failed.setdefault(entry["expectation"] + json.dumps(entry.get("column")), entry)
        if merged is None:
            merged = dict(report)
        else:
            merged["success"] = merged["success"] and report["success"]
            merged["rows"] += report["rows"]
            merged["seconds"] = round(merged["seconds"] + report["seconds"], 6)
    if merged is None:
        return {"success": True, "skipped": "empty batch", "rows": 0}
    merged["failed"] = list(failed.values())
    merged["chunks"] = {"rows": chunk_rows, "count": -(-merged["rows"] // chunk_rows)}
    return merged


def validate_batch(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                   chunk_rows: int = VALIDATE_CHUNK_ROWS) -> ValidationResult:
    """Run the Great Expectations suite on the curated batch at ``key``; raise ``ValidationFailed`` if it fails.

    Every row is validated, part by part (``validate_part``: the DAG's ``finish_shard`` runs it per shard;
    a part it validated is not validated again) in chunks of ``chunk_rows`` (one suite run each; a batch
    of at most that many rows is one run): the partition fails if any chunk fails. The suite's uniqueness
    expectations (``id``, ``content_sha256``) see one chunk at a time, so they are also checked over the
    whole partition, on a 32-byte digest per row.

    A partition with input whose records that passed governance (kept + duplicates) are fewer than
    ``validation.min_records`` fails too (a week where every record was quarantined must alert, not
    publish an empty version); the suite itself is skipped on an empty batch. A week with no input at
    all is not checked: ``publish_partition`` publishes nothing for it. The report is written next to
    the partition's quarantine so on-call can see what failed.
    """
    import numpy as np

    report_key = part.staging(config, "validation.json")
    ingest = get_json(store, part.staging(config, "ingest.json"))
    dedup = get_json(store, part.staging(config, f"{find_duplicates.name}.json"))
    passed = dedup["kept"] + dedup["duplicate"]
    parts = staged_parts(store, key)
    reports = [validate_part(config=config, store=store, part=part.shard_ref(None if len(parts) == 1 else k),
                             key=part_key, chunk_rows=chunk_rows) for k, part_key in enumerate(parts)]
    rows = sum(r["rows"] for r in reports)
    if passed < config.validation.min_records and (ingest["records_in"] or ingest["rejected"]):
        _fail_min_records(config, store, part, ingest=ingest, dedup=dedup, rows=rows, report_key=report_key)
    if rows == 0:
        put_json(store, report_key, {"success": True, "skipped": "empty batch", "rows": 0})
        return ValidationResult(key=key, success=True, rows=0, report=report_key, skipped="empty batch")
    report = reports[0] if len(reports) == 1 else _merge_reports(reports, chunk_rows=chunk_rows)
    if rows > chunk_rows or len(reports) > 1:  # no one suite run saw every row: uniqueness over the partition
        bodies = [np.frombuffer(store.get(sibling(k, PART_DIGESTS)), dtype="S32") for k in parts]
        for c, column in enumerate(UNIQUE_COLUMNS):
            values = np.concatenate([b.reshape(len(UNIQUE_COLUMNS), -1)[c] for b in bodies])
            repeated = len(values) - len(np.unique(values))
            if repeated:
                report["success"] = False
                report["failed"].append({
                    "expectation": "expect_column_values_to_be_unique", "column": column, "scope": "partition",
                    "unexpected_count": int(repeated), "unexpected_values": []})
    put_json(store, report_key, report)
    if not report["success"]:
        failed_key = f"{part.quarantine(config)}/validation-failed-{part.run_key}.json"
        put_json(store, failed_key, report)
        raise ValidationFailed(
            f"{part.domain} {part.interval.name}: suite {report['suite_name']} failed "
            f"({len(report['failed'])} expectation(s): {', '.join(f['expectation'] for f in report['failed'])}); "
            f"partition NOT published; report: {store.uri(failed_key)}"
        )
    return ValidationResult(key=key, success=True, rows=rows, report=report_key)


def _fail_min_records(config: PipelineConfig, store: ObjectStore, part: PartitionRef, *, ingest: dict, dedup: dict,
                      rows: int, report_key: str) -> None:
    passed = dedup["kept"] + dedup["duplicate"]
    minimum = config.validation.min_records
    reasons: Counter[str] = Counter()
    for name in ("ingest", *(s.name for s in CHAIN)):
        for key in staged_parts(store, part.staging(config, f"rejected.{name}.jsonl")):
            try:
                reasons.update(r["reason"] for r in get_jsonl(store, key))
            except NotFound:
                pass
    report = {"success": False, "rows": rows, "suite_name": "validation.min_records",
              "failed": [{"expectation": "validation.min_records", "min_records": minimum,
                          "records_in": ingest["records_in"], "passed_governance": passed,
                          "kept": dedup["kept"], "duplicate": dedup["duplicate"],
                          "quarantined_by_reason": dict(sorted(reasons.items()))}]}
    put_json(store, report_key, report)
    failed_key = f"{part.quarantine(config)}/validation-failed-{part.run_key}.json"
    put_json(store, failed_key, report)
    raise ValidationFailed(
        f"{part.domain} {part.interval.name}: only {passed} of {ingest['records_in']} record(s) passed "
        f"governance, fewer than validation.min_records={minimum} (quarantined: "
        f"{', '.join(f'{r} {n}' for r, n in sorted(reasons.items())) or 'none'}); partition NOT published; "
        f"report: {store.uri(failed_key)}")
