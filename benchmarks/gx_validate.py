"""Benchmark the GX validation step on a synthetic curated batch, side by side in one run.

Builds a valid batch of N rows (400-600-byte texts, real sha256 digests, a third of the ratings
null) and a copy with a bad language, a rating of 7 and a duplicated id every 10,000 rows, then
times on one core, each case in a fresh process (a pipeline worker validates once per process,
so allocator warm-up is part of the real cost; the GX import is not timed):

* ``validate_batch`` on the valid batch: the pipeline's path (one BOOLEAN_ONLY pass);
* ``validate_batch`` on the batch with bad rows (BOOLEAN_ONLY, then SUMMARY on the failed checks);
* for comparison, one pass of the same suite through GX with other choices: SUMMARY instead of
  BOOLEAN_ONLY, GX's batch fingerprint left on (GX's default), and ``types_mapper=pd.ArrowDtype``.

Usage (from the project root):
    .venv/bin/python benchmarks/gx_validate.py [--rows 1000000] [--cores 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.feather as feather  # noqa: E402

SUITE = ROOT / "expectations" / "curated_batch.json"
DOMAINS = ["legal", "medical", "finance", "customer_service", "product_reviews"]

# name -> (batch, description)
CASES = {
    "pipeline": ("valid", "validate_batch, valid batch (BOOLEAN_ONLY pass)"),
    "pipeline_bad": ("bad", "validate_batch, bad rows (BOOLEAN_ONLY + SUMMARY re-run)"),
    "summary": ("valid", "GX one pass, SUMMARY"),
    "boolean_fingerprint": ("valid", "GX one pass, BOOLEAN_ONLY, batch fingerprint on"),
    "summary_fingerprint": ("valid", "GX one pass, SUMMARY, batch fingerprint on"),
    "boolean_arrowdtype": ("valid", "GX one pass, BOOLEAN_ONLY, to_pandas(ArrowDtype)"),
}


def synthetic_batch(rows: int, *, seed: int = 0) -> pa.Table:
    """A valid curated batch: unique ids and texts, 400-600-byte texts, a third of ratings null."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(400, 601, rows, dtype=np.int64)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    data = alphabet[rng.integers(0, len(alphabet), int(offsets[-1]))].tobytes()
    text = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)).cast(pa.string())
    view = memoryview(data)
    digests = [hashlib.sha256(view[offsets[i] : offsets[i + 1]]).hexdigest() for i in range(rows)]

    def pick(values: list[str]) -> pa.Array:
        return pa.array(values).take(pa.array(rng.integers(0, len(values), rows)))

    nulls = pa.nulls(rows, pa.string())
    return pa.table(
        {
            "id": pa.array([f"r{i:09d}" for i in range(rows)]),
            "domain": pick(DOMAINS),
            "text": text,
            "label": pick(["positive", "negative", "neutral"]),
            "source": pick(["files", "feedback"]),
            "source_uri": pick([f"s3://mlops-data/landing/legal/2024-06-0{d}/part-{d}.jsonl" for d in range(1, 8)]),
            "arrival_date": pick([f"2024-06-0{d}" for d in range(1, 8)]),
            "created_at": pick(["2024-06-01T10:00:00Z", "2024-06-02T11:30:00+08:00"]),
            "language": pick(["zh", "en", "other"]),
            "content_sha256": pa.array(digests),
            "usage": pick(["train", "review", "hold"]),
            "question": nulls,
            "answer": nulls,
            "rating": pa.array(rng.integers(1, 6, rows), type=pa.int64(), mask=np.arange(rows) % 3 == 0),
            "correction": nulls,
            "model_version": nulls,
            "request_id": nulls,
            "label_source": pick(["source", "predicted", "reviewed"]),
            "label_confidence": pa.array(rng.random(rows)),
            "sensitive_flags": nulls,
        }
    )


def with_bad_rows(table: pa.Table) -> pa.Table:
    """The batch with one bad language, one rating of 7 and one duplicated id every 10,000 rows."""
    every = pa.array(np.arange(table.num_rows) % 10_000 == 5_000)
    for column, value in (("language", "fr"), ("rating", 7), ("id", "r000000000")):
        index = table.schema.get_field_index(column)
        replaced = pc.if_else(every, pa.scalar(value, table.schema.field(column).type), table[column])
        table = table.set_column(index, column, replaced)
    return table


def run_case(case: str, path: Path) -> dict[str, object]:
    """Time one case in this process; called in a fresh child process per case."""
    from pipelines.validate import gx_runner, validate_batch

    table = feather.read_table(path, memory_map=False)
    parameters = {"domains": DOMAINS}
    gx = gx_runner._import_great_expectations()
    # First-call costs of GX itself (registries, its own lazy imports) are not per-batch costs.
    validate_batch(table=table.slice(0, 100), suite_path=SUITE, parameters=parameters)

    if case.startswith("pipeline"):
        report = validate_batch(table=table, suite_path=SUITE, parameters=parameters)
        failed = [
            f"{e['expectation']}({e['column']}): {e['unexpected_count']} x {list(e['unexpected_values'])}"
            for e in report.failed
        ]
        return {"seconds": report.seconds, "success": report.success, "failed": failed}

    import pandas as pd

    suite = gx_runner._build_suite(gx, gx_runner.read_suite_file(SUITE).suite, source=str(SUITE))
    result_format = gx_runner.DETAIL_RESULT_FORMAT if case.startswith("summary") else "BOOLEAN_ONLY"
    started = time.perf_counter()
    if case.endswith("arrowdtype"):
        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    else:
        frame = gx_runner.arrow_to_pandas(table)
    run = gx_runner._suite_runner(gx, parameters, fingerprint=case.endswith("fingerprint"))
    success = run(suite, frame, result_format).success
    return {"seconds": time.perf_counter() - started, "success": success, "failed": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to pin to (0 = no pinning)")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--batch", type=Path, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
        pa.set_cpu_count(args.cores)
        pa.set_io_thread_count(args.cores)
    if args.case:
        print(json.dumps(run_case(args.case, args.batch)))
        return

    started = time.perf_counter()
    table = synthetic_batch(args.rows)
    print(
        f"batch: {args.rows:,} rows, {table.nbytes / 1e6:,.0f} MB in Arrow, "
        f"built in {time.perf_counter() - started:.1f} s; "
        f"pinned to {len(os.sched_getaffinity(0))} core(s); each case in a fresh process"
    )
    with tempfile.TemporaryDirectory(prefix="gx_validate_") as tmp:
        paths = {"valid": Path(tmp) / "valid.arrow", "bad": Path(tmp) / "bad.arrow"}
        feather.write_feather(table, paths["valid"], compression="uncompressed")
        feather.write_feather(with_bad_rows(table), paths["bad"], compression="uncompressed")
        del table
        for case, (batch, description) in CASES.items():
            command = [sys.executable, __file__, "--case", case, "--batch", str(paths[batch])]
            command += ["--cores", str(args.cores)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            seconds = float(result["seconds"])
            rate = args.rows / seconds
            print(f"  {description:<58} {seconds:6.2f} s {rate:>10,.0f} rows/s  success={result['success']}")
            for line in result["failed"]:
                print(f"      {line}")
    print("pipeline result format: BOOLEAN_ONLY over the suite, then SUMMARY over the failed expectations only")


if __name__ == "__main__":
    main()
