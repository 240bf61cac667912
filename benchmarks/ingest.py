"""Benchmark the weekly ingest stages side by side in one run, on one core.

Writes N synthetic landing records (``benchmarks/synthetic.py``: ~500-byte en/zh texts, 10% exact
and 2% near duplicates, 5 domains over 4 weeks) as JSONL files and loads their bytes. Each round
then runs every stage of ``pipelines.weekly`` partition by partition (domain, week) in week order,
as the flow does, with one partition's records in memory at a time, and times each stage's core
(the staging reads and writes between the flow's tasks are not timed):

* parse: ``parse_file`` over each file's bytes;
* standardize: ``standardize_record`` over the parsed records;
* governance, in the flow's order on the standardized rows: ``clean_records`` (the domain's cleaning
  rules), ``mask_records`` (PII), ``filter_records`` with a synthetic **120,000-word** lexicon
  (``--lexicon-words``; built once per run, untimed; policy ``flag``), and labelling:
  ``Labeller.predict`` (MiniLM + head, trained on the bundled legal sample before the first round,
  untimed) on the first ``--label-records`` rows of each round (labelling runs only on unlabelled
  records in the flow, and is ~1000x slower per record than the other stages);
* normalize+hash+dedup: what ``find_duplicates`` does: ``pipelines.dedup.dedup_partition``
  (``packed_hashes``, compiled when built, ``HashIndex.lookup`` on a ``LocalObjectStore`` index and
  ``decide``); the partition's signatures are then added to the index (timed apart:
  ``publish_partition`` does it). The hasher in use (compiled or python) is printed;
* raw sha256: ``hashlib.sha256`` over the same texts' UTF-8 bytes right after, the physical limit of
  the hash step (and, for reference, with the UTF-8 encoding in the loop);
* GX validation: ``pipelines.validate.validate_batch`` on each partition's curated (kept) batch, as
  the flow runs it, and once more on the whole curated batch in one call; GX's import and
  first-call costs are paid once before the first round and not timed;
* publish: ``parquet_bytes`` of each partition's curated rows plus the write to a ``LocalObjectStore``.

Then the peak memory of the dedup step (hash + lookup + decide of one week) with 1, 10 and 100
earlier weekly signature sets in the index, each in a fresh process (tracemalloc peak of the step,
and the process's RSS high-water mark over the step), with the index laid out as the weekly flow
leaves it (default ``buckets``/``compact_after``; a bucket is compacted when a lookup finds more
than ``compact_after`` segments in it).

Prints a table of medians over ``--repeat`` rounds (ratios are taken per round, then the median)
and writes it as JSON (``--json``).

Usage (from the project root):
    .venv/bin/python benchmarks/ingest.py                    # 1,000,000 records, one core
    .venv/bin/python benchmarks/ingest.py --records 20000    # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.synthetic import DOMAINS, SyntheticConfig, iter_records, write_landing  # noqa: E402
from pipelines.config import DedupConfig  # noqa: E402
from pipelines.dedup import dedup_partition  # noqa: E402
from pipelines.dedup.index import ENTRY, HashIndex  # noqa: E402
from pipelines.dedup.normalize import IMPLEMENTATION as HASHER  # noqa: E402
from pipelines.ingest.parse import parse_file  # noqa: E402
from pipelines.partition import Interval, day_number  # noqa: E402
from pipelines.serialize import parquet_bytes  # noqa: E402
from pipelines.standardize import RawRecord, standardize_record, to_row  # noqa: E402
from pipelines.storage import LocalObjectStore, ObjectInfo  # noqa: E402

SUITE = ROOT / "expectations" / "curated_batch.json"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "ingest.json"
ENCODINGS = ("utf-8", "gb18030")
SOURCE = "files"  # the source name (the suite allows "files" and "feedback")
WEEK0 = SyntheticConfig().start_date  # a Sunday, like the DAG's data intervals

# Targets on one core (records or rows per second; the dedup one is a share of raw hashing).
TARGETS = {"standardize": 200_000, "gx": 100_000, "dedup_over_raw": 0.5}
STAGES = (  # (key, label)
    ("parse", "parse (JSONL parse_file)"),
    ("standardize", "standardize (standardize_record)"),
    ("clean", "clean (clean_records)"),
    ("pii", "PII mask (mask_records)"),
    ("sensitive", "sensitive filter, 120k words (filter_records)"),
    ("label", "auto-label (Labeller.predict, MiniLM)"),
    ("dedup", "normalize+hash+dedup (find_duplicates core)"),
    ("dedup.hash", "  of which packed_hashes"),
    ("dedup.lookup", "  of which HashIndex.lookup"),
    ("dedup.decide", "  of which distinct + days + decide"),
    ("raw_sha256", "raw hashlib.sha256 (UTF-8 bytes)"),
    ("raw_sha256_encode", "raw hashlib.sha256 (str.encode + hash)"),
    ("index_add", "index add (publish side)"),
    ("gx", "GX validation (validate_batch, per partition)"),
    ("gx_whole", "GX validation (validate_batch, whole batch)"),
    ("publish", "publish (parquet_bytes + put)"),
)


# ------------------------------------------------------------------------------------ helpers
def pin(cores: int) -> None:
    if cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
        import pyarrow as pa

        pa.set_cpu_count(cores)
        pa.set_io_thread_count(cores)


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def week_of(day: dt.date) -> Interval:
    start = WEEK0 + dt.timedelta(days=7 * ((day - WEEK0).days // 7))
    return Interval(start, start + dt.timedelta(days=7))


def load_landing(records: int, out_dir: Path) -> tuple[list[tuple[str, str, str, bytes]], dict]:
    """Write the synthetic landing files; return ``(key, domain, arrival date, bytes)`` in key order."""
    started = time.perf_counter()
    summary = write_landing(config=SyntheticConfig(records=records), out_dir=out_dir)
    files = []
    for key in sorted(summary.keys, key=lambda k: (k.split("/")[2], k)):
        _, domain, day, _ = key.split("/")
        files.append((key, domain, day, (out_dir / key).read_bytes()))
    info = {"records": summary.records, "files": len(files), "bytes": summary.bytes_written,
            "exact_duplicates": summary.exact_duplicates, "near_duplicates": summary.near_duplicates,
            "seconds": round(time.perf_counter() - started, 2)}
    return files, info


def gx_warm_up() -> None:
    """GX's import and first-call costs (registries, lazy imports) are not per-batch costs."""
    import pyarrow as pa

    from pipelines.serialize import curated_schema
    from pipelines.validate import validate_batch

    row = {"id": "warm-1", "domain": DOMAINS[0], "text": "warm up", "label": None, "source": SOURCE,
           "source_uri": "landing/x#L1", "arrival_date": WEEK0.isoformat(), "created_at": None, "language": "en",
           "usage": "train", "content_sha256": hashlib.sha256(b"warm up").hexdigest()}
    table = pa.Table.from_pylist([to_row(row)], schema=curated_schema())
    validate_batch(table=table, suite_path=SUITE, parameters={"domains": list(DOMAINS)})


# ----------------------------------------------------------------------------------- stores
class PrefixScopedStore(LocalObjectStore):
    """``LocalObjectStore`` whose ``list`` walks only the folder that holds the prefix.

    Same keys in the same order; ``LocalObjectStore.list`` walks the whole store (and calls
    ``os.path.relpath`` per file) on every call, and ``HashIndex.lookup`` lists once per bucket.
    ``--index-store scoped`` uses this to show what the dedup step costs without that.
    """

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        keys = []
        for dirpath, _dirs, names in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            head = "" if rel == "." else rel + "/"
            for name in names:
                key = head + name
                if not name.startswith(".tmp-") and key.startswith(prefix) and key > start_after:
                    keys.append(key)
        for key in sorted(keys):
            stat = (self.root / key).stat()
            yield ObjectInfo(key=key, size=stat.st_size, etag=f"{stat.st_size}-{stat.st_mtime_ns}")


STORES = {"local": LocalObjectStore, "scoped": PrefixScopedStore}


# ------------------------------------------------------------------------------------- a round
class Governance:
    """What the governance stages need, built once per run (untimed): rules, the 120k lexicon, a labeller."""

    def __init__(self, *, lexicon_words: int, label_records: int, seed: int = 7) -> None:
        from benchmarks.sensitive_filter import synthetic_words
        from pipelines.config import load_config
        from pipelines.governance import domain_rules
        from pipelines.sensitive import Lexicon

        config = load_config()
        self.rules = {d: domain_rules(config, d) for d in DOMAINS}
        started = time.perf_counter()
        self.lexicon = Lexicon.from_entries(synthetic_words(lexicon_words, seed))
        self.lexicon.automaton, self.lexicon.batch_matcher  # compiled once per worker, not per partition: untimed
        self.lexicon_build_s = time.perf_counter() - started
        self.lexicon_words = lexicon_words
        self.label_records = label_records
        self.labeller = None
        if label_records:
            from pipelines.label import train_labeller
            from pipelines.label.data import distinct_labelled, sample_records

            data = distinct_labelled(sample_records("legal"))
            self.labeller = train_labeller(texts=list(data.texts), labels=list(data.labels), language="en")
            self.labeller.predict(list(data.texts)[:8])  # first-call allocations, untimed


def run_round(files: list[tuple[str, str, str, bytes]], work: Path, *, index_store: str = "local",
              governance: Governance | None = None) -> dict[str, dict]:
    """Every stage once, partition by partition (domain, week) in week order, as the weekly flow runs.

    One partition's records are in memory at a time, as in the flow's tasks. Returns
    ``{stage: {"seconds", "count", ...}}``; stage times are summed over the partitions.
    """
    import pyarrow as pa

    from pipelines.serialize import curated_schema
    from pipelines.validate import validate_batch

    clock = time.perf_counter
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # stage -> [seconds, count]
    extra: dict[str, float] = defaultdict(float)

    def add(stage: str, seconds: float, count: int) -> None:
        totals[stage][0] += seconds
        totals[stage][1] += count
        add.counts[stage] = add.counts.get(stage, 0) + count

    add.counts = {}

    by_partition: dict[tuple[dt.date, str], list] = defaultdict(list)
    for f in files:
        by_partition[(week_of(dt.date.fromisoformat(f[2])).start, f[1])].append(f)
    store_class = STORES[index_store]
    index_store_obj = store_class(work / "index-store")
    out_store = LocalObjectStore(work / "curated-store")
    dedup_config = DedupConfig()
    indexes = {d: HashIndex(store=index_store_obj, prefix=f"index/{d}", buckets=dedup_config.buckets,
                            compact_after=dedup_config.compact_after) for d in DOMAINS}
    tables = []
    gx_success = True
    gx_failed: list[str] = []
    sha256 = hashlib.sha256
    for (week_start, domain), part_files in sorted(by_partition.items()):
        interval = Interval(week_start, week_start + dt.timedelta(days=7))

        # parse
        started = clock()
        parsed = [parse_file(key=key, data=data, kind="files", encodings=ENCODINGS) for key, _, _, data in part_files]
        add("parse", clock() - started, sum(len(p.records) for p in parsed))
        extra["parse_bytes"] += sum(len(f[3]) for f in part_files)
        extra["parse_rejected"] += sum(len(p.rejections) for p in parsed)

        # standardize (the RawRecord envelopes are what standardize_records rebuilds from raw.jsonl: untimed)
        items = [RawRecord(arrival_date=day, key=key, line=line, source=SOURCE, kind="files", raw=raw)
                 for (key, _, day, _), p in zip(part_files, parsed) for line, raw in p.records]
        del parsed
        started = clock()
        standardized = [standardize_record(item, domain=domain) for item in items]
        add("standardize", clock() - started, len(items))
        del items
        rows = [to_row(out) for out in standardized if isinstance(out, dict)]
        extra["standardize_rejected"] += len(standardized) - len(rows)
        del standardized

        if governance is not None:
            rows = govern(rows, domain, governance, add, extra)

        # normalize + hash + dedup: what find_duplicates does around its Parquet I/O
        index = indexes[domain]
        texts = [r["text"] for r in rows]
        arrival_dates = [r["arrival_date"] for r in rows]
        parts: dict[str, float] = {}
        t0 = clock()
        packed, decision = dedup_partition(texts=texts, arrival_dates=arrival_dates, start=interval.start,
                                           end=interval.end, index=index, timings=parts)
        t4 = clock()
        index.add(decision.entries, tag=interval.start.isoformat())  # publish_partition's job
        t5 = clock()
        n = len(rows)
        add("dedup", t4 - t0, n)
        add("dedup.hash", parts["hash"], n)
        add("dedup.lookup", parts["lookup"], n)
        add("dedup.decide", parts["decide"], n)
        add("index_add", t5 - t4, n)
        extra["duplicates"] += len(decision.duplicates)
        extra["partitions"] += 1

        # raw sha256 over the same texts, right after: the bytes alone (the limit), and with the encoding
        encoded = [t.encode("utf-8") for t in texts]
        started = clock()
        [sha256(b).digest() for b in encoded]
        add("raw_sha256", clock() - started, n)
        del encoded
        started = clock()
        [sha256(t.encode("utf-8")).digest() for t in texts]
        add("raw_sha256_encode", clock() - started, n)
        del texts

        kept = []
        hexes = packed.hex()
        for i in decision.kept:
            rows[i]["content_sha256"] = hexes[64 * i:64 * i + 64]
            kept.append(rows[i])
        del rows, packed, hexes, arrival_dates
        # GX on the partition's curated batch (the Arrow table is what validate_batch reads from staging: untimed)
        table = pa.Table.from_pylist(kept, schema=curated_schema())
        started = clock()
        report = validate_batch(table=table, suite_path=SUITE, parameters={"domains": [domain]})
        add("gx", clock() - started, table.num_rows)
        gx_success &= report.success
        gx_failed += [f"{domain} {f['expectation']}({f.get('column')})" for f in report.failed]
        tables.append(table)

        # publish: Parquet bytes of the curated rows + the write
        started = clock()
        data = parquet_bytes(kept)
        out_store.put(f"curated/{domain}/{interval.name}/v-bench/data.parquet", data)
        add("publish", clock() - started, len(kept))
        extra["publish_bytes"] += len(data)
        del kept, data

    # GX once on the whole curated batch (all partitions in one table), as benchmarks/gx_validate.py does
    batch = pa.concat_tables(tables)
    del tables
    started = clock()
    report = validate_batch(table=batch, suite_path=SUITE, parameters={"domains": list(DOMAINS)})
    add("gx_whole", clock() - started, batch.num_rows)
    gx_success &= report.success
    gx_failed += [f"whole {f['expectation']}({f.get('column')})" for f in report.failed]

    timings = {stage: {"seconds": seconds, "count": int(count)} for stage, (seconds, count) in totals.items()}
    for stage in ("clean", "pii", "sensitive"):
        if stage in timings:
            timings[stage]["dropped"] = int(extra[f"{stage}_dropped"])
    if "sensitive" in timings:
        timings["sensitive"]["flagged"] = int(extra["sensitive_flagged"])
    timings["parse"]["mb_per_s"] = extra["parse_bytes"] / timings["parse"]["seconds"] / 1e6
    timings["parse"]["rejected"] = int(extra["parse_rejected"])
    timings["standardize"]["rejected"] = int(extra["standardize_rejected"])
    timings["dedup"].update(kept=timings["publish"]["count"], duplicates=int(extra["duplicates"]),
                            partitions=int(extra["partitions"]))
    timings["gx"].update(success=gx_success, failed=gx_failed)
    timings["publish"]["mb_per_s"] = extra["publish_bytes"] / timings["publish"]["seconds"] / 1e6
    return timings


def govern(rows: list[dict], domain: str, governance: Governance, add, extra) -> list[dict]:
    """The governance stages on one partition's standardized rows, as the flow runs them; returns the kept rows."""
    from pipelines.clean import clean_records
    from pipelines.pii import mask_records
    from pipelines.sensitive import SensitiveConfig, filter_records

    clock = time.perf_counter
    rules = governance.rules[domain]
    n = len(rows)
    started = clock()
    cleaned = clean_records(rows, config=rules.clean)
    add("clean", clock() - started, n)
    extra["clean_dropped"] += n - len(cleaned.rows)
    rows = cleaned.rows

    n = len(rows)
    started = clock()
    masked = mask_records(rows, config=rules.pii)
    add("pii", clock() - started, n)
    rows = masked.rows

    n = len(rows)
    started = clock()
    filtered = filter_records(rows, lexicon=governance.lexicon, policy=SensitiveConfig(default="flag"))
    add("sensitive", clock() - started, n)
    extra["sensitive_dropped"] += n - len(filtered.rows)
    extra["sensitive_flagged"] += len(filtered.flagged)
    rows = filtered.rows

    budget = governance.label_records - totals_count(add, "label")
    if governance.labeller is not None and budget > 0:
        texts = [r["text"] for r in rows[:budget]]
        started = clock()
        governance.labeller.predict(texts)
        add("label", clock() - started, len(texts))
    return rows


def totals_count(add, stage: str) -> int:
    """Records already timed for ``stage`` this round (the labelling budget is per round)."""
    return add.counts.get(stage, 0)


# --------------------------------------------------------------------------- dedup memory
def flow_compactions(partitions: int, compact_after: int) -> int:
    """How many of the first weeks the flow's last compaction holds, after ``partitions`` weeks.

    Each week looks up (compacting a bucket that holds more than ``compact_after`` segments)
    and then adds one segment per bucket. Returns 0 if no compaction happened.
    """
    segments, compacted = 0, 0
    for week in range(1, partitions + 1):
        if segments > compact_after:
            segments, compacted = 1, week - 1
        segments += 1
    return compacted


def build_index(root: Path, *, partitions: int, week_records: int, seed: int = 7) -> dict:
    """An index of ``partitions`` earlier weekly signature sets (random hashes), laid out as the flow leaves it."""
    config = DedupConfig()
    store = PrefixScopedStore(root)  # same files as LocalObjectStore writes; building is not what is measured

    def fresh_index() -> HashIndex:  # one per step, as each flow task makes its own
        return HashIndex(store=store, prefix="index/legal", buckets=config.buckets, compact_after=config.compact_after)

    rng = np.random.default_rng(seed)
    compact_at = flow_compactions(partitions, config.compact_after)
    for week in range(partitions):
        if week == compact_at and compact_at:
            # One lookup that touches every bucket compacts exactly as the flow's lookup of week compact_at+1.
            fresh_index().lookup(np.array([i.to_bytes(4, "big") + bytes(28) for i in range(config.buckets)], dtype="S32"))
        start = WEEK0 - dt.timedelta(days=7 * (partitions - week))
        entries = np.empty(week_records, ENTRY)
        entries["h"] = np.frombuffer(rng.bytes(32 * week_records), dtype="S32")
        entries["d"] = day_number(start) + rng.integers(0, 7, week_records)
        fresh_index().add(entries, tag=start.isoformat())
    segments = sum(1 for o in store.list("index/legal/") if o.key.endswith(".seg"))
    return {"segments": segments, "compacted_weeks": compact_at}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(index_root: Path, week_records: int, mode: str, index_store: str = "local") -> dict:
    """The dedup step of one week against the index at ``index_root`` (run in a fresh process)."""
    import tracemalloc

    config = DedupConfig()
    texts = [r["text"] for r in iter_records(SyntheticConfig(records=week_records, records_per_file=week_records))]
    arrival_dates = [(WEEK0 + dt.timedelta(days=(i * 7) // len(texts))).isoformat() for i in range(len(texts))]
    index = HashIndex(store=STORES[index_store](index_root), prefix="index/legal", buckets=config.buckets,
                      compact_after=config.compact_after)
    gc.collect()
    rss_before = _rss_kib("VmRSS") * 1024
    # ru_maxrss of a child counts the parent's RSS at fork (Linux keeps it across exec): use the
    # process's own high-water mark, reset here so that it is the peak of the step.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    if mode == "tracemalloc":
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    _packed, decision = dedup_partition(texts=texts, arrival_dates=arrival_dates, start=WEEK0,
                                        end=WEEK0 + dt.timedelta(days=7), index=index)
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "kept": len(decision.kept), "segments_read": index.stats.segments_read,
              "compactions": index.stats.compactions}
    if mode == "tracemalloc":
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    else:
        peak = _rss_kib("VmHWM") * 1024
        result.update(rss_before_bytes=rss_before, peak_rss_bytes=peak, rss_growth_bytes=max(0, peak - rss_before))
    return result


def measure_memory(partition_counts: list[int], week_records: int, cores: int, work: Path, index_store: str) -> list[dict]:
    results = []
    for count in partition_counts:
        root = work / f"memory-index-{count}"
        started = time.perf_counter()
        built = build_index(root, partitions=count, week_records=week_records)
        built["build_seconds"] = round(time.perf_counter() - started, 1)
        row = {"partitions": count, "index_entries": count * week_records, **built}
        for mode in ("rss", "tracemalloc"):
            # Each child starts from the same index (a lookup may compact it): copy it first.
            child_root = work / f"memory-index-{count}-{mode}"
            subprocess.run(["cp", "-r", str(root), str(child_root)], check=True)
            command = [sys.executable, __file__, "--memory-child", str(child_root), "--memory-week", str(week_records),
                       "--memory-mode", mode, "--cores", str(cores), "--index-store", index_store]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            child = json.loads(output.strip().splitlines()[-1])
            row.update({f"{k}" if k.endswith("bytes") else f"{mode}_{k}": v for k, v in child.items()})
            subprocess.run(["rm", "-rf", str(child_root)], check=True)
        subprocess.run(["rm", "-rf", str(root)], check=True)
        results.append(row)
        print(f"  {count:>4} earlier partitions ({count * week_records:>11,} hashes, {built['segments']:>5} segments): "
              f"tracemalloc peak {row['tracemalloc_peak_bytes'] / 2**20:7.1f} MiB, "
              f"process peak RSS {row['peak_rss_bytes'] / 2**20:7.1f} MiB "
              f"(+{row['rss_growth_bytes'] / 2**20:.1f} MiB in the step), step {row['rss_seconds']:.2f} s",
              flush=True)
    return results


# ------------------------------------------------------------------------------------------ main
def rate(t: dict) -> float:
    return t["count"] / t["seconds"] if t["seconds"] > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ingest N synthetic ~500-byte records through every weekly stage (parse, standardize, "
        "normalize+hash+dedup, GX validation, publish) and print records/s per stage side by side, with raw "
        "hashlib.sha256 over the same texts as the limit of the hash step; then the peak memory of the dedup "
        "step with 1/10/100 earlier partitions in the index, each in a fresh process.",
        epilog="Example: python benchmarks/ingest.py --records 20000 --repeat 1 --json '' (smoke test). "
        f"Targets on one core: standardize >= {TARGETS['standardize']:,}/s, GX >= {TARGETS['gx']:,} rows/s, "
        f"dedup >= {TARGETS['dedup_over_raw']:.0%} of raw sha256.",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="synthetic records to ingest (default: %(default)s)")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to pin to, 0 = no pinning (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all stages; medians are reported (default: %(default)s)")
    parser.add_argument("--memory-partitions", default="1,10,100",
                        help="earlier partitions in the index for the dedup memory test, comma-separated; "
                        "'' skips it (default: %(default)s)")
    parser.add_argument("--memory-week", type=int, default=None,
                        help="records per week (and hashes per earlier partition) in the memory test "
                        "(default: 100000, or --records if fewer)")
    parser.add_argument("--json", default=str(DEFAULT_JSON),
                        help="where to write the results as JSON; '' writes nothing (default: benchmarks/results/ingest.json)")
    parser.add_argument("--index-store", choices=sorted(STORES), default="local",
                        help="store of the dedup index: 'local' is LocalObjectStore as shipped; 'scoped' lists only "
                        "the prefix's folder (same keys), to separate LocalObjectStore's LIST cost (default: %(default)s)")
    parser.add_argument("--lexicon-words", type=int, default=120_000,
                        help="synthetic sensitive words in the filter's lexicon; 0 skips the governance stages "
                        "(default: %(default)s)")
    parser.add_argument("--label-records", type=int, default=2_000,
                        help="records labelled per round (MiniLM on CPU: ~1,000x slower than the other stages); "
                        "0 skips labelling (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-mode", choices=("rss", "tracemalloc"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be >= 1")
    try:
        partition_counts = [int(p) for p in args.memory_partitions.split(",") if p.strip()]
    except ValueError:
        parser.error(f"--memory-partitions {args.memory_partitions!r}: use comma-separated integers, e.g. 1,10,100")
    if args.memory_week is None:
        args.memory_week = min(100_000, args.records)
    pin(args.cores)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_week, args.memory_mode, args.index_store)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_ingest_", dir=args.workdir) as tmp:
        work = Path(tmp)
        files, landing = load_landing(args.records, work / "landing-files")
        print(f"landing: {landing['records']:,} records ({landing['exact_duplicates']:,} exact + "
              f"{landing['near_duplicates']:,} near duplicates) in {landing['files']} files, "
              f"{landing['bytes'] / 1e6:,.0f} MB, written in {landing['seconds']} s; "
              f"pinned to {len(os.sched_getaffinity(0))} core(s)", flush=True)
        gx_warm_up()
        governance = None
        if args.lexicon_words:
            governance = Governance(lexicon_words=args.lexicon_words, label_records=args.label_records)
            print(f"governance: {args.lexicon_words:,}-word lexicon built in {governance.lexicon_build_s:.1f} s; "
                  f"labelling {args.label_records:,} records a round", flush=True)
        rounds = []
        for r in range(args.repeat):
            gc.collect()
            round_dir = work / f"round-{r}"
            timings = run_round(files, round_dir, index_store=args.index_store, governance=governance)
            subprocess.run(["rm", "-rf", str(round_dir)], check=True)
            rounds.append(timings)
            print(f"round {r + 1}/{args.repeat}: " + ", ".join(
                f"{k} {rate(timings[k]):,.0f}/s" for k, _ in STAGES if "." not in k and k in timings), flush=True)
        del files
        gc.collect()
        memory = []
        if partition_counts:
            print(f"dedup step memory, one {args.memory_week:,}-record week, fresh process each:", flush=True)
            memory = measure_memory(partition_counts, args.memory_week, args.cores, work, args.index_store)

    summary = summarize(rounds)
    print_table(args, landing, rounds, summary, memory)
    if args.json:
        write_json(Path(args.json), args, landing, rounds, summary, memory)
    return 0


def summarize(rounds: list[dict[str, dict]]) -> dict:
    stages = {}
    for key, label in STAGES:
        if key not in rounds[0]:
            continue  # governance stages skipped (--lexicon-words 0 / --label-records 0)
        rates = [rate(r[key]) for r in rounds]
        stages[key] = {"label": label.strip(), "records_per_s": statistics.median(rates),
                       "seconds": statistics.median(r[key]["seconds"] for r in rounds),
                       "count": rounds[0][key]["count"], "runs_records_per_s": [round(x) for x in rates]}
    # Ratios per round (paired in time), then the median.
    ratio = statistics.median(rate(r["dedup"]) / rate(r["raw_sha256"]) for r in rounds)
    ratio_encode = statistics.median(rate(r["dedup"]) / rate(r["raw_sha256_encode"]) for r in rounds)
    gx_ok = all(r["gx"]["success"] for r in rounds)
    checks = {
        "standardize_rejected": rounds[0]["standardize"]["rejected"], "parse_rejected": rounds[0]["parse"]["rejected"],
        "kept": rounds[0]["dedup"]["kept"], "duplicates": rounds[0]["dedup"]["duplicates"],
        "partitions": rounds[0]["dedup"]["partitions"], "gx_success": gx_ok,
        "gx_failed": rounds[0]["gx"]["failed"],
    }
    targets = {
        "standardize_records_per_s": {"target": TARGETS["standardize"], "value": stages["standardize"]["records_per_s"],
                                      "met": stages["standardize"]["records_per_s"] >= TARGETS["standardize"]},
        "gx_rows_per_s_whole_batch": {"target": TARGETS["gx"], "value": stages["gx_whole"]["records_per_s"],
                                      "met": stages["gx_whole"]["records_per_s"] >= TARGETS["gx"]},
        "gx_rows_per_s_per_partition": {"target": TARGETS["gx"], "value": stages["gx"]["records_per_s"],
                                        "met": stages["gx"]["records_per_s"] >= TARGETS["gx"]},
        "dedup_over_raw_sha256": {"target": TARGETS["dedup_over_raw"], "value": ratio,
                                  "met": ratio >= TARGETS["dedup_over_raw"]},
    }
    if "sensitive" in rounds[0]:
        # Paired per round: the 120k-word filter must be at least as fast as the dedup stage.
        filter_ratio = statistics.median(rate(r["sensitive"]) / rate(r["dedup"]) for r in rounds)
        targets["sensitive_filter_over_dedup"] = {"target": 1.0, "value": filter_ratio, "met": filter_ratio >= 1.0}
        checks.update(clean_dropped=rounds[0]["clean"]["dropped"], sensitive_flagged=rounds[0]["sensitive"]["flagged"])
    return {"stages": stages, "dedup_over_raw_sha256": ratio, "dedup_over_raw_sha256_with_encode": ratio_encode,
            "checks": checks, "targets": targets}


def print_table(args, landing: dict, rounds: list, summary: dict, memory: list[dict]) -> None:
    stages = summary["stages"]
    print()
    print(f"{args.records:,} records, {len(rounds)} round(s), {len(os.sched_getaffinity(0))} core(s), "
          f"index store {args.index_store}, dedup hasher {HASHER}; medians")
    print(f"  {'stage':<46} {'records/s':>12} {'seconds':>9} {'records':>10}   runs (records/s)")
    for key, label in STAGES:
        if key not in stages:
            continue
        s = stages[key]
        runs = ", ".join(f"{x:,}" for x in s["runs_records_per_s"])
        print(f"  {label:<46} {s['records_per_s']:>12,.0f} {s['seconds']:>9.2f} {s['count']:>10,}   {runs}")
    print(f"  dedup / raw sha256 (bytes): {summary['dedup_over_raw_sha256']:.3f}   "
          f"(with str.encode in the raw loop: {summary['dedup_over_raw_sha256_with_encode']:.3f})")
    c = summary["checks"]
    print(f"  checks: parse rejected {c['parse_rejected']}, standardize rejected {c['standardize_rejected']}, "
          f"{c['partitions']} partitions, kept {c['kept']:,}, duplicates {c['duplicates']:,}, GX success {c['gx_success']}"
          + (f" failed {c['gx_failed']}" if c["gx_failed"] else ""))
    if memory:
        print("  dedup step peak memory (one week; earlier partitions in the index):")
        for m in memory:
            print(f"    {m['partitions']:>4} partitions: tracemalloc peak {m['tracemalloc_peak_bytes'] / 2**20:7.1f} MiB, "
                  f"peak RSS {m['peak_rss_bytes'] / 2**20:7.1f} MiB (+{m['rss_growth_bytes'] / 2**20:.1f} MiB), "
                  f"step {m['rss_seconds']:.2f} s, {m['rss_segments_read']} segments read, "
                  f"{m['rss_compactions']} compactions")
    print("  targets (one core):")
    for name, t in summary["targets"].items():
        value = f"{t['value']:.3f}" if t["value"] < 10 else f"{t['value']:,.0f}"
        print(f"    {name:<32} {value:>10}  target >= {t['target']:,}  {'MET' if t['met'] else 'MISSED'}")


def write_json(path: Path, args, landing: dict, rounds: list, summary: dict, memory: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores_pinned": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "records": args.records, "repeat": args.repeat, "index_store": args.index_store, "dedup_hasher": HASHER,
        "landing": landing,
        **summary,
        "rounds": [{k: {kk: vv for kk, vv in v.items()} for k, v in r.items()} for r in rounds],
        "dedup_memory": memory,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
