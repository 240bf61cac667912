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
from pipelines.label.registry import fetch_labeller
from pipelines.partition import Interval, arrival_date_of
from pipelines.pii import PiiMapping, mask_records
from pipelines.release_requests import execute_release_requests
from pipelines.review import apply_reviews, build_queue, load_reviews
from pipelines.sensitive import filter_records
from pipelines.serialize import get_json, get_jsonl, jsonl_bytes, put_json
from pipelines.standardize import RawRecord, schema_version, standardize_record, to_row
from pipelines.storage import NotFound, ObjectStore
from pipelines.validate import validate_batch as run_suite
from pipelines.weekly.batches import JsonlFile, Progress, download, iter_jsonl_batches, log, upload, work_folder
from pipelines.weekly.chain import Applied, Apply, Step, step  # noqa: F401  (Step: the chain's step type)
from pipelines.weekly.dedup_step import DedupStep
from pipelines.weekly.labels import load_predictions, needs_label, predict_missing
from pipelines.weekly.layout import PartitionRef, find_misplaced, list_interval_files
from pipelines.weekly.shardplan import PII_TOKENS, load_numbering, plan_cuts, split_lines
from pipelines.weekly.results import FeedbackRouted, IngestResult, ValidationResult


# --------------------------------------------------------------------------------------- ingest
def _execute_releases(config: PipelineConfig, store: ObjectStore, domain: str, interval: Interval,
                      run_key: str) -> list[dict]:
    """Execute a partition's pending release requests; what each became, for the step's report."""
    return [{"request": r.key, "who": r.who, "ids": list(r.ids), **r.outcome}
            for r in execute_release_requests(config=config, store=store, domain=domain, interval=interval,
                                              run_key=run_key)]


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
    """
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

    progress = Progress("ingest", f"{part.domain} {part.interval.name}")
    inputs = []
    file_records: list[int] = []  # records each file wrote to raw.jsonl, in order: where shards are cut
    file_problems = rows_seen = parsed_records = record_rejections = 0
    # Records go to a local raw.jsonl line by line (one landing file in memory at a time, at most
    # ingest.max_file_bytes), uploaded at the end: memory does not grow with the week.
    with work_folder("ingest") as folder, JsonlFile(folder / "raw.jsonl") as raw, \
            JsonlFile(folder / "rejected.jsonl") as rejected:

        def reject(rejection: dict) -> None:
            nonlocal record_rejections
            rejected.write((rejection,))
            record_rejections += is_record(rejection)

        for day, obj, source in files:
            if obj.size > config.ingest.max_file_bytes:
                reject(Rejection(obj.key, "parse", "file_too_large", f"{obj.size} bytes > ingest.max_file_bytes",
                                 kind=FILE).to_dict())
                file_problems += 1
                continue
            # A code domain's snapshot is read, classified and scrubbed by pipelines.code; else parse_file.
            parsed = parse_landing(config=config, domain=part.domain, key=obj.key, data=store.get(obj.key),
                                   kind=source.kind, encodings=config.ingest.encodings)
            report_snapshot(store, prefix=part.quarantine(config), run_key=part.run_key, parsed=parsed)
            if parsed.unaccounted:
                raise RuntimeError(f"{obj.key}: the reader saw {parsed.rows} rows but the parser accounted for "
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
            inputs.append({"key": obj.key, "etag": obj.etag, "size": obj.size, "source": source.name,
                           "encoding": parsed.encoding or None})
            iso = day.isoformat()
            for line, record in records:
                raw.write_raw(json.dumps({"d": iso, "k": obj.key, "l": line, "s": source.name, "t": source.kind,
                                          "r": record}, ensure_ascii=False).encode("utf-8") + b"\n")
            parsed_records += len(records)
            file_records.append(len(records))
            progress.add(len(records), obj.size)
            del parsed, records
        if rows_seen != parsed_records + record_rejections:
            raise RuntimeError(f"{part.domain} {part.interval.name}: readers saw {rows_seen} rows, ingest accounted "
                               f"for {parsed_records} records + {record_rejections} rejections")
        if misplaced:
            log.warning("ingest %s: %d landing file(s) outside any <YYYY-MM-DD>/ folder are not read (move them "
                        "into their arrival date's folder): %s", part.domain, len(misplaced), ", ".join(misplaced[:20]))
        raw.close()
        rejected.close()
        ranges = plan_cuts(file_records, shard_records=config.ingest.shard_records)
        if len(ranges) == 1:  # not sharded: the partition's raw.jsonl, as the chain reads it
            shards = [upload(store, part.staging(config, "raw.jsonl"), raw.path)]
        else:
            shards = [upload(store, part.shard_ref(k).staging(config, "raw.jsonl"), path)
                      for k, path in enumerate(split_lines(raw.path, ranges, folder))]
            log.info("ingest %s: %d records in %d shards of at most %d (ingest.shard_records)", part.label,
                     parsed_records, len(shards), config.ingest.shard_records)
        upload(store, part.staging(config, "rejected.ingest.jsonl"), rejected.path)
    result = IngestResult(
        key=shards[0], domain=part.domain, interval=part.interval.name, run_key=part.run_key, inputs=inputs,
        files={"read": len(inputs), "quarantined": file_problems, "misplaced": len(misplaced)},
        records_in=rows_seen, parsed=parsed_records, rejected=rejected.lines,
        seconds=round(time.perf_counter() - started, 3), misplaced=misplaced, releases=releases,
        shards=shards if len(shards) > 1 else (),
    )
    put_json(store, part.staging(config, "ingest.json"), result.to_dict())
    progress.done()
    log.info("ingest %s %s: %d files, %d records parsed, %d rejected", part.domain, part.interval.name,
             len(inputs), parsed_records, rejected.lines)
    return result


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
@step("labelled")
def auto_label(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Label unlabelled records with the domain's labeller; reviewed labels (imported with
    ``python -m pipelines review import``) win over predictions; stage the review queue.

    At least ceil(share * n) of the auto-labelled records, plus every low-confidence one, go to the
    queue (seeded by the partition, so a re-run picks the same ones). The queue is written at publish.
    Batches are labelled as they stream; the queue is chosen at the end from the (id, confidence) of every
    auto-labelled record, and its texts are read back from the rows written.
    """
    label = config.for_domain(part.domain).label
    review, name = label.review, label.labeller
    reviews = load_reviews(store, domain=part.domain, interval=part.interval.name)
    reviewed_ids = {str(i) for i in reviews}
    loaded: dict[str, Any] = {}
    todo_ids: list[str] = []
    predictions: list[tuple[str, float]] = []
    totals = {"rows": 0, "reviewed": 0, "agreed": 0}

    def labeller_for_partition():
        if "labeller" not in loaded:
            loaded["labeller"], loaded["pointer"] = fetch_labeller(store, name) if name else (None, None)
        return loaded["labeller"]

    def staged():
        if "staged" not in loaded:
            version = loaded["pointer"]["version"] if loaded.get("pointer") else None
            loaded["staged"] = load_predictions(config, store, part, version)
        return loaded["staged"]

    def apply(rows: list[dict]) -> Applied:
        for row in rows:
            if row["label"] is not None:
                row["label_source"] = "source"
        todo = [r for r in rows if needs_label(r)]
        labeller = labeller_for_partition() if todo else None
        if labeller is not None:
            predicted, inline = predict_missing(labeller_for_partition, [r["text"] for r in todo], staged())
            totals["inline"] = totals.get("inline", 0) + inline
            for row, (label, confidence) in zip(todo, predicted):
                row.update(label=label, label_source="predicted", label_confidence=confidence)
            todo_ids.extend(r["id"] for r in todo)
            predictions.extend(predicted)
        totals["todo"] = totals.get("todo", 0) + len(todo)
        if reviews:
            rows, stats = apply_reviews(rows, reviews)
            for row in rows:
                if row["id"] in reviewed_ids:
                    row["label_source"] = "reviewed"
            totals["rows"] += stats.rows
            totals["reviewed"] += stats.reviewed
            totals["agreed"] += stats.agreed
        return Applied(rows)

    def finish(written) -> Applied:
        todo, labelled = totals.get("todo", 0), loaded.get("labeller") is not None
        if totals.get("inline") and loaded.get("staged") is not None:  # a label_shard task's output is missing
            log.warning("auto_label %s: %d of %d records had no label_shard prediction and were predicted here",
                        part.label, totals["inline"], todo)
        queue: list[dict] = []
        if labelled:
            queue = build_queue([{"id": i, "text": None} for i in todo_ids], predictions, domain=part.domain,
                                partition_key=f"{part.domain}/{part.interval.name}", config=review)
            wanted = {q["id"]: q for q in queue}
            for batch in written():  # the queued records' texts, from the rows written
                for row in batch:
                    if row["id"] in wanted:
                        wanted[row["id"]]["text"] = row["text"]
        reviewed = totals["reviewed"]
        counts = {"unlabelled": todo, "predicted": todo if labelled else 0, "queued": len(queue),
                  "low_confidence": sum(1 for q in queue if q["reason"] == "low_confidence"),
                  "reviewed": reviewed,
                  "reviewed_share": reviewed / totals["rows"] if reviews and totals["rows"] else 0.0,
                  "agreement": totals["agreed"] / reviewed if reviews and reviewed else None}
        pointer = loaded.get("pointer")
        described = ({"name": name, "version": pointer["version"], "labels": pointer.get("labels")} if pointer else
                     {"name": name, "version": None, "note": "no labeller published: records keep their labels"})
        return Applied((), (), counts, files={"review_queue.jsonl": jsonl_bytes(queue)},
                       extra={"labeller": described})

    apply.finish = finish
    return apply


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


def validate_batch(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                   chunk_rows: int = VALIDATE_CHUNK_ROWS) -> ValidationResult:
    """Run the Great Expectations suite on the curated batch at ``key``; raise ``ValidationFailed`` if it fails.

    Every row is validated, in chunks of ``chunk_rows`` (one suite run each; a batch of at most that many
    rows is one run, as before): the partition fails if any chunk fails. The suite's uniqueness
    expectations (``id``, ``content_sha256``) see one chunk at a time, so they are also checked over the
    whole partition, on a 32-byte digest per row.

    A partition with input whose records that passed governance (kept + duplicates) are fewer than
    ``validation.min_records`` fails too (a week where every record was quarantined must alert, not
    publish an empty version); the suite itself is skipped on an empty batch. A week with no input at
    all is not checked: ``publish_partition`` publishes nothing for it. The report is written next to
    the partition's quarantine so on-call can see what failed.
    """
    import pyarrow.parquet as pq

    report_key = part.staging(config, "validation.json")
    ingest = get_json(store, part.staging(config, "ingest.json"))
    dedup = get_json(store, part.staging(config, f"{find_duplicates.name}.json"))
    passed = dedup["kept"] + dedup["duplicate"]
    minimum = config.validation.min_records
    with work_folder("validate") as folder:
        path = download(store, key, folder)
        rows = pq.ParquetFile(path).metadata.num_rows
        if passed < minimum and (ingest["records_in"] or ingest["rejected"]):
            _fail_min_records(config, store, part, ingest=ingest, dedup=dedup, rows=rows, report_key=report_key)
        if rows == 0:
            put_json(store, report_key, {"success": True, "skipped": "empty batch", "rows": 0})
            return ValidationResult(key=key, success=True, rows=0, report=report_key, skipped="empty batch")
        params = {"domains": [part.domain]}
        suite = config.validation.suite
        if rows <= chunk_rows:
            report = run_suite(table=pq.read_table(path), suite_path=suite, parameters=params).to_dict()
        else:
            report = _validate_in_chunks(path, suite=suite, parameters=params, chunk_rows=chunk_rows,
                                         where=f"{part.domain} {part.interval.name}")
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


def _validate_in_chunks(path, *, suite, parameters: dict, chunk_rows: int, where: str) -> dict:
    """One suite run per chunk of rows, merged into one report; plus partition-wide uniqueness."""
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    progress = Progress("validate", where)
    merged: dict[str, Any] | None = None
    failed: dict[str, dict] = {}
    digests: dict[str, list[np.ndarray]] = {c: [] for c in UNIQUE_COLUMNS}
    with pq.ParquetFile(path, pre_buffer=False) as pf:  # see serialize.iter_parquet_batches
        for batch in pf.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            for column in UNIQUE_COLUMNS:
                if column in table.column_names:
                    values = table.column(column).to_pylist()
                    digests[column].append(np.array([hashlib.sha256(str(v).encode()).digest() for v in values],
                                                    dtype="S32"))
            report = run_suite(table=table, suite_path=suite, parameters=parameters).to_dict()
            progress.add(table.num_rows)
            del table, batch
            for entry in report["failed"]:
                failed.setdefault(entry["expectation"] + json.dumps(entry.get("column")), entry)
            if merged is None:
                merged = report
            else:
                merged["success"] = merged["success"] and report["success"]
                merged["rows"] += report["rows"]
                merged["seconds"] = round(merged["seconds"] + report["seconds"], 6)
    assert merged is not None
    for column, parts in digests.items():
        if not parts:
            continue
        values = np.concatenate(parts)
        repeated = len(values) - len(np.unique(values))
        if repeated:
            merged["success"] = False
            failed.setdefault(f"partition.unique.{column}", {
                "expectation": "expect_column_values_to_be_unique", "column": column, "scope": "partition",
                "unexpected_count": int(repeated), "unexpected_values": []})
    merged["failed"] = list(failed.values())
    merged["chunks"] = {"rows": chunk_rows, "count": -(-merged["rows"] // chunk_rows)}
    progress.done()
    return merged


def _fail_min_records(config: PipelineConfig, store: ObjectStore, part: PartitionRef, *, ingest: dict, dedup: dict,
                      rows: int, report_key: str) -> None:
    passed = dedup["kept"] + dedup["duplicate"]
    minimum = config.validation.min_records
    reasons: Counter[str] = Counter()
    for name in ("ingest", *(s.name for s in CHAIN)):
        try:
            reasons.update(r["reason"] for r in get_jsonl(store, part.staging(config, f"rejected.{name}.jsonl")))
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
