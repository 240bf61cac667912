"""The steps of one partition's chain, each one Airflow task of ``dags/weekly_ingest.py``.

``ingest_landing`` parses the interval's landing files; every later step reads the rows at the ``key``
the previous step returned, applies its logic and writes its own rows, report and rejections through
one read-apply-write helper (``Step``). ``CHAIN`` is the order, used by ``process_partition`` and by
``publish_partition`` (which quarantine files and step reports a version holds).

Adding a governance step is one function decorated with ``@step("<name>")`` and one line in
``GOVERNANCE`` (plus its task in the DAG, which passes the key on).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.clean import clean_records
from pipelines.code.ingest import parse_landing, report_snapshot
from pipelines.config import PipelineConfig
from pipelines.dedup import dedup_partition
from pipelines.dedup.index import encode_segment
from pipelines.governance import domain_rules, lexicon_for
from pipelines.ingest.parse import FILE, RECORD, Rejection, is_record, parse_file
from pipelines.label.registry import fetch_labeller
from pipelines.partition import Interval, arrival_date_of, from_day_number
from pipelines.pii import mask_records
from pipelines.review.queue import apply_reviews, build_queue, load_reviews
from pipelines.sensitive import filter_records
from pipelines.serialize import get_json, get_jsonl, jsonl_bytes, parquet_bytes, put_json, read_parquet_rows
from pipelines.standardize import RawRecord, schema_version, standardize_record, to_row
from pipelines.storage import NotFound, ObjectStore
from pipelines.validate import validate_batch as run_suite
from pipelines.weekly.layout import PartitionRef, find_misplaced, hash_index, list_interval_files
from pipelines.weekly.results import FeedbackRouted, IngestResult, StepResult, ValidationResult

log = logging.getLogger("pipelines.weekly")


class ValidationFailed(RuntimeError):
    """The curated batch failed its expectation suite; the partition was not published."""


# --------------------------------------------------------------------------------------- ingest
def ingest_landing(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> IngestResult:
    """List and parse every landing file of the partition's interval, from every configured source.

    Files are read in (arrival date, key) order; their records keep (date, key, line), the order dedup
    uses. Files and lines that cannot be parsed are rejected with their reason. ``records_in`` counts
    the rows each reader saw (records + record rejections), so a row no parser emitted still has to
    be accounted for. Files of the domain's sources outside any ``<YYYY-MM-DD>/`` folder are reported
    (``misplaced``, a warning), never read.
    """
    started = time.perf_counter()
    config.domain(part.domain)
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

    raw_lines: list[bytes] = []
    rejections: list[dict] = []
    inputs = []
    file_problems = rows_seen = 0
    for day, obj, source in files:
        if obj.size > config.ingest.max_file_bytes:
            rejections.append(Rejection(obj.key, "parse", "file_too_large",
                                        f"{obj.size} bytes > ingest.max_file_bytes", kind=FILE).to_dict())
            file_problems += 1
            continue
        # A code domain's snapshot is read, classified and scrubbed by pipelines.code (issue 18); else parse_file.
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
                rejections.append(parsed.file_error.to_dict())
                file_problems += 1
                continue
            rejections.extend(r.to_dict() for r in parsed.rejections)
            rows_seen += parsed.rows
        inputs.append({"key": obj.key, "etag": obj.etag, "size": obj.size, "source": source.name,
                       "encoding": parsed.encoding or None})
        iso = day.isoformat()
        for line, raw in records:
            raw_lines.append(json.dumps({"d": iso, "k": obj.key, "l": line, "s": source.name, "t": source.kind, "r": raw},
                                        ensure_ascii=False).encode("utf-8"))
    record_rejections = sum(1 for r in rejections if is_record(r))
    if rows_seen != len(raw_lines) + record_rejections:
        raise RuntimeError(f"{part.domain} {part.interval.name}: readers saw {rows_seen} rows, ingest accounted for "
                           f"{len(raw_lines)} records + {record_rejections} rejections")
    if misplaced:
        log.warning("ingest %s: %d landing file(s) outside any <YYYY-MM-DD>/ folder are not read (move them into "
                    "their arrival date's folder): %s", part.domain, len(misplaced), ", ".join(misplaced[:20]))
    raw_key = part.staging(config, "raw.jsonl")
    store.put(raw_key, b"\n".join(raw_lines) + (b"\n" if raw_lines else b""))
    store.put(part.staging(config, "rejected.ingest.jsonl"), jsonl_bytes(rejections))
    result = IngestResult(
        key=raw_key, domain=part.domain, interval=part.interval.name, run_key=part.run_key, inputs=inputs,
        files={"read": len(inputs), "quarantined": file_problems, "misplaced": len(misplaced)},
        records_in=rows_seen, parsed=len(raw_lines), rejected=len(rejections),
        seconds=round(time.perf_counter() - started, 3), misplaced=misplaced,
    )
    put_json(store, part.staging(config, "ingest.json"), result.to_dict())
    log.info("ingest %s %s: %d files, %d records parsed, %d rejected", part.domain, part.interval.name,
             len(inputs), len(raw_lines), len(rejections))
    return result


def route_feedback(*, config: PipelineConfig, store: ObjectStore, interval: Interval,
                   run_key: str = "manual") -> FeedbackRouted:
    """Quarantine feedback that reaches no domain (unparseable files/lines, unknown domain).

    Each domain's ``ingest_landing`` takes its own feedback records; this step accounts for the rest,
    so feedback counts reconcile too: in = routed (per domain) + quarantined.
    """
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
                            misplaced=misplaced)
    if misplaced:
        log.warning("feedback: %d landing file(s) outside any <YYYY-MM-DD>/ folder are not read: %s",
                    len(misplaced), ", ".join(misplaced[:20]))
    put_json(store, f"{config.storage.quarantine_prefix}/feedback/{interval.name}/manifest.json", result.to_dict())
    return result


# ------------------------------------------------------------------------- read-apply-write steps
@dataclass(frozen=True)
class Applied:
    """What a step's logic made of its input rows.

    ``files`` are further staged outputs by name (``duplicates.jsonl``...); ``extra`` goes into the report.
    """

    rows: list[dict]
    rejections: Sequence[Rejection] = ()
    counts: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


Apply = Callable[[list[dict]], Applied]
Prepare = Callable[[PipelineConfig, ObjectStore, PartitionRef], Apply]


@dataclass(frozen=True)
class Step:
    """A chain step: reads the rows at ``key``, applies its logic, writes ``<output>.parquet`` (its
    result's ``key``), ``rejected.<name>.jsonl`` and the report ``<name>.json``.

    ``prepare(config, store, part)`` loads what the step needs for this partition (rules, lexicon,
    labeller) and returns the function applied to the rows.
    """

    name: str
    prepare: Prepare
    output: str
    read: Callable[[bytes], list[dict]] = read_parquet_rows

    def __post_init__(self) -> None:
        object.__setattr__(self, "__doc__", self.prepare.__doc__)

    @property
    def __name__(self) -> str:
        return self.prepare.__name__

    def __call__(self, *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
        started = time.perf_counter()
        apply = self.prepare(config, store, part)
        rows = self.read(store.get(key))
        out = apply(rows)
        written = part.staging(config, f"{self.output}.parquet")
        store.put(written, parquet_bytes(list(out.rows)))
        store.put(part.staging(config, f"rejected.{self.name}.jsonl"), jsonl_bytes([r.to_dict() for r in out.rejections]))
        for name, body in out.files.items():
            store.put(part.staging(config, name), body)
        result = StepResult(step=self.name, key=written, rows_in=len(rows), kept=len(out.rows),
                            rejected=len(out.rejections), counts=out.counts, extra=out.extra,
                            seconds=round(time.perf_counter() - started, 3))
        put_json(store, part.staging(config, f"{self.name}.json"), result.to_dict())
        log.info("%s %s %s: in=%d kept=%d rejected=%d", self.name, part.domain, part.interval.name, len(rows),
                 len(out.rows), len(out.rejections))
        return result


def step(name: str, *, output: str | None = None, read: Callable[[bytes], list[dict]] = read_parquet_rows):
    """Make a chain ``Step`` named ``name`` from its ``prepare`` function."""
    return lambda prepare: Step(name=name, prepare=prepare, output=output or name, read=read)


# ---------------------------------------------------------------------------------- standardize
def _raw_records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


@step("standardize", output="standardized", read=_raw_records)
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
    """Mask phones, emails, ID and bank card numbers, addresses: same value, same token in a partition."""
    rules = domain_rules(config, part.domain)

    def apply(rows: list[dict]) -> Applied:
        result = mask_records(rows, config=rules.pii)
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
@step("dedup", output="deduplicated")
def find_duplicates(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """SHA-256 exact dedup of the partition against itself and the persistent index.

    Nothing is written to the index here: the partition's signature set is staged and added by
    ``publish_partition``, so a partition that fails validation never hides later records.
    """
    index = hash_index(config, store, part.domain)

    def apply(rows: list[dict]) -> Applied:
        packed, decision = dedup_partition(texts=[r["text"] for r in rows],
                                           arrival_dates=[r["arrival_date"] for r in rows],
                                           start=part.interval.start, end=part.interval.end, index=index)
        hexes = packed.hex()
        for i, row in enumerate(rows):
            row["content_sha256"] = hexes[64 * i:64 * i + 64]
        # Ids must be unique in a partition; a different text under an id already kept is a conflict.
        seen_ids: set[str] = set()
        conflicts: list[Rejection] = []
        unique_rows = []
        for row in (rows[i] for i in decision.kept):
            if row["id"] in seen_ids:
                conflicts.append(Rejection(row["source_uri"], "dedup", "id_conflict",
                                           f"id {row['id']!r} already used by another record in this partition",
                                           row["text"][:4096]))
                continue
            seen_ids.add(row["id"])
            unique_rows.append(row)
        duplicates = [
            {"id": rows[i]["id"], "source_uri": rows[i]["source_uri"], "content_sha256": rows[i]["content_sha256"],
             "reason": reason, "first_seen": from_day_number(first_day).isoformat()}
            for i, reason, first_day in decision.duplicates
        ]
        return Applied(unique_rows, conflicts,
                       files={"duplicates.jsonl": jsonl_bytes(duplicates),
                              "signatures.seg": encode_segment(decision.entries)},
                       extra={"duplicate": len(duplicates),
                              "displaced": [from_day_number(d).isoformat() for d in decision.displaced_days],
                              "index": {"buckets_touched": index.stats.buckets_touched,
                                        "segments_read": index.stats.segments_read}})

    return apply


# ---------------------------------------------------------------------------------------- label
@step("labelled")
def auto_label(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> Apply:
    """Label unlabelled records with the domain's labeller; reviewed labels (imported with
    ``python -m pipelines review import``) win over predictions; stage the review queue.

    At least ceil(share * n) of the auto-labelled records, plus every low-confidence one, go to the
    queue (seeded by the partition, so a re-run picks the same ones). The queue is written at publish.
    """
    label = config.for_domain(part.domain).label
    review, name = label.review, label.labeller

    def apply(rows: list[dict]) -> Applied:
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
            queue = build_queue(todo, predictions, domain=part.domain,
                                partition_key=f"{part.domain}/{part.interval.name}", config=review)
        reviews = load_reviews(store, domain=part.domain, interval=part.interval.name)
        stats = None
        if reviews:
            reviewed_ids = {str(i) for i in reviews}
            rows, stats = apply_reviews(rows, reviews)
            for row in rows:
                if row["id"] in reviewed_ids:
                    row["label_source"] = "reviewed"
        counts = {"unlabelled": len(todo), "predicted": len(todo) if labeller else 0, "queued": len(queue),
                  "low_confidence": sum(1 for q in queue if q["reason"] == "low_confidence"),
                  "reviewed": stats.reviewed if stats else 0,
                  "reviewed_share": stats.share_reviewed if stats else 0.0,
                  "agreement": stats.agreement if stats else None}
        described = ({"name": name, "version": pointer["version"], "labels": pointer.get("labels")} if pointer else
                     {"name": name, "version": None, "note": "no labeller published: records keep their labels"})
        return Applied(rows, (), counts, files={"review_queue.jsonl": jsonl_bytes(queue)},
                       extra={"labeller": described})

    return apply


# ---------------------------------------------------------------------------------------- chain
# The governance steps between standardize and dedup, in order: dedup hashes cleaned, masked text.
GOVERNANCE: tuple[Step, ...] = (clean_text, mask_pii, filter_sensitive)
# Every step after ingest_landing, in order: each reads the key the previous one returned.
CHAIN: tuple[Step, ...] = (standardize_records, *GOVERNANCE, find_duplicates, auto_label)


# ------------------------------------------------------------------------------------ validate
def validate_batch(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> ValidationResult:
    """Run the Great Expectations suite on the curated batch at ``key``; raise ``ValidationFailed`` if it fails.

    A partition with input whose records that passed governance (kept + duplicates) are fewer than
    ``validation.min_records`` fails too (a week where every record was quarantined must alert, not
    publish an empty version); the suite itself is skipped on an empty batch. A week with no input at
    all is not checked: ``publish_partition`` publishes nothing for it. The report is written next to
    the partition's quarantine so on-call can see what failed.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(store.get(key)))
    report_key = part.staging(config, "validation.json")
    ingest = get_json(store, part.staging(config, "ingest.json"))
    dedup = get_json(store, part.staging(config, f"{find_duplicates.name}.json"))
    passed = dedup["kept"] + dedup["duplicate"]
    minimum = config.validation.min_records
    if passed < minimum and (ingest["records_in"] or ingest["rejected"]):
        reasons: Counter[str] = Counter()
        for name in ("ingest", *(s.name for s in CHAIN)):
            try:
                reasons.update(r["reason"] for r in get_jsonl(store, part.staging(config, f"rejected.{name}.jsonl")))
            except NotFound:
                pass
        report = {"success": False, "rows": table.num_rows, "suite_name": "validation.min_records",
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
    if table.num_rows == 0:
        put_json(store, report_key, {"success": True, "skipped": "empty batch", "rows": 0})
        return ValidationResult(key=key, success=True, rows=0, report=report_key, skipped="empty batch")
    report = run_suite(table=table, suite_path=config.validation.suite, parameters={"domains": [part.domain]})
    put_json(store, report_key, report.to_dict())
    if not report.success:
        failed_key = f"{part.quarantine(config)}/validation-failed-{part.run_key}.json"
        put_json(store, failed_key, report.to_dict())
        raise ValidationFailed(
            f"{part.domain} {part.interval.name}: suite {report.suite_name} failed "
            f"({len(report.failed)} expectation(s): {', '.join(f['expectation'] for f in report.failed)}); "
            f"partition NOT published; report: {store.uri(failed_key)}"
        )
    return ValidationResult(key=key, success=True, rows=table.num_rows, report=report_key)
