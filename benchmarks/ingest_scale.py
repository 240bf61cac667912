"""Ingestion at scale: one legal-like week of N documents through the weekly steps, as the DAG runs them.

Generates a week of N English legal-like documents of ``--doc-bytes`` (~7.5 KB; phone numbers and e-mail
addresses in some, so PII masking has work) with ``--dup-share`` exact duplicates (5 %), as JSONL landing
files of ``--file-docs`` documents, in a ``file://`` store under ``--work``. Then runs every step of
``pipelines.weekly`` in its own subprocess, in the DAG's order (each task is a process of its own):
ingest_landing, standardize, clean, PII mask, sensitive filter, dedup, label, validate (GX), publish.
Each child is polled with psutil (every 0.1 s: RSS of the process tree); the disk of the store's staging
area plus the steps' work folders (``PIPELINE_WORK_DIR``) is polled too.

Per step: seconds, documents/s, MB/s (of the landing bytes), peak RSS. Per run: the peak RSS of any step,
the seconds of all steps, the peak disk. Adds its runs to ``benchmarks/results/ingest_scale.json`` (a run of
the same documents, doc_bytes, workers and shard_records is replaced; the others are kept):
``{"runs": [{"documents", "doc_bytes", "peak_rss_mb", "seconds", "workers", "peak_disk_mb", "steps": {...}}]}``.

Without ``--workers`` the week is one partition-wide chain (``ingest.shard_records`` 0), one step after
another. With ``--workers W ...`` the week is sharded (``--shard-records``, default an eighth of the week)
and run as the DAG runs it: ingest_landing (the listing), every group's ``ingest_files`` task, plan_shards, then
every shard's ``clean_shard`` task, ``number_pii``, every shard's
``govern_shard`` and ``label_shard`` tasks, ``find_duplicates`` (gather, the dedup decision), every shard's
``finish_shard`` task (dedup applied, labels, suite), then auto_label (the review queue), validate (the
verdict) and publish. The shard tasks run as separate
processes, at most W at a time (as W LocalExecutor slots or Celery worker processes would run them); the
peak RSS of a stage is that of all its concurrent processes together. Each W is a run of its own on a fresh
store with the same landing files.

Usage (from the project root):
    .venv/bin/python benchmarks/ingest_scale.py --documents 10000 100000
    .venv/bin/python benchmarks/ingest_scale.py --documents 100000 --workers 1 2      # sharded, 1 vs 2 workers
    .venv/bin/python benchmarks/ingest_scale.py --documents 1000000 --workers 1 2 --repeats 3   # median of 3 each
    .venv/bin/python benchmarks/ingest_scale.py --documents 300 --work /tmp/x --out /tmp/x/r.json   # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WEEK = "2026-10-04_2026-10-11"
DOMAIN = "legal"
STEPS = ("ingest", "standardize", "cleaned", "masked", "filtered", "dedup", "labelled", "validate", "publish")
SHARDED_STEPS = ("plan_ingest", "ingest_files", "plan_shards", "clean_shard", "number_pii", "govern_shard", "label_shard", "find_duplicates",
                 "finish_shard", "labelled", "validate", "publish")
PER_SHARD = ("ingest_files", "clean_shard", "govern_shard", "label_shard", "finish_shard")
# The labeller of --labeller runs (a MiniLM + linear head, trained in seconds on these texts): what it
# predicts does not matter here, its forward passes on ~7.5 KB documents do.
LABELLER_TEXTS = {
    "contract": ["The contract was signed by both parties.", "The supplier breached the sales contract.",
                 "The lease agreement terminates in May.", "Both parties amended the service agreement."],
    "employment": ["The employee was dismissed without notice.", "Overtime pay was withheld by the employer.",
                   "The worker filed a claim for unpaid wages.", "The employer ended the employment contract early."],
}
WORDS = ("the court held that plaintiff defendant appeal contract breach statute liability damages tenant lease "
         "clause jurisdiction evidence witness judgment order motion counsel hearing claim party agreement "
         "obligation remedy injunction negligence trial verdict ruling section article provision notice "
         "employer employee dismissal compensation settlement arbitration property title deed").split()


# ------------------------------------------------------------------------------------ generation
def document(rng: random.Random, n: int, size: int) -> str:
    """A legal-like English text of about ``size`` characters (a phone and an e-mail in some)."""
    words = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
        if len(words) % 15 == 0:
            words[-1] += "."
    if n % 7 == 0:
        words.insert(5, f"call 138{n % 100000000:08d}")
    if n % 11 == 0:
        words.insert(9, f"write to clerk{n % 97}@court.example.org")
    return f"Case {n}: " + " ".join(words)


def land_week(store_root: Path, *, documents: int, doc_bytes: int, dup_share: float, file_docs: int,
              seed: int = 7) -> dict:
    """Write the week's landing files; returns what was written."""
    rng = random.Random(seed)
    start = dt.date.fromisoformat(WEEK.split("_")[0])
    originals: list[str] = []
    written = files = 0
    fh = None
    for n in range(documents):
        if n % file_docs == 0:
            if fh:
                fh.close()
            day = start + dt.timedelta(days=(n * 7) // documents)
            path = store_root / "landing" / DOMAIN / day.isoformat() / f"batch-{n // file_docs:05d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "w", encoding="utf-8")
            files += 1
        if originals and rng.random() < dup_share:
            text = rng.choice(originals)
        else:
            text = document(rng, n, doc_bytes)
            if len(originals) < 2000:
                originals.append(text)
            elif rng.random() < 0.01:
                originals[rng.randrange(len(originals))] = text
        line = json.dumps({"id": f"d{n:08d}", "text": text}, ensure_ascii=False) + "\n"
        fh.write(line)
        written += len(line.encode("utf-8"))
    if fh:
        fh.close()
    return {"files": files, "bytes": written}


# ------------------------------------------------------------------------------------ labelling
def train_bench_labeller(folder: Path) -> Path:
    """Train the benchmark's English labeller (MiniLM + linear head) into ``folder``; returns it."""
    from pipelines.label import LabellerConfig, train_labeller

    labeller = train_labeller(texts=[t for ts in LABELLER_TEXTS.values() for t in ts],
                              labels=[label for label, ts in LABELLER_TEXTS.items() for _ in ts], language="en",
                              config=LabellerConfig(), seed=7)
    labeller.use_int8([t for ts in LABELLER_TEXTS.values() for t in ts])  # as publishing does: INT8 on a CPU if it agrees
    return labeller.save(folder)


def publish_bench_labeller(bucket: Path, folder: Path) -> None:
    """Publish the labeller as the legal domain's, in the ``file://`` store whose bucket folder is ``bucket``."""
    from pipelines.label.registry import publish_labeller
    from pipelines.storage import LocalObjectStore

    publish_labeller(LocalObjectStore(bucket), folder, name=DOMAIN)


def run_label_only(documents: int, *, doc_bytes: int, device: str, batch_size: int, work: Path,
                   labeller: Path, repeats: int) -> dict:
    """``label_shard`` alone, in this process, on one shard of ``documents`` unlabelled documents (the
    staged rows as govern_shard leaves them); records/s of each of ``repeats`` runs (the labeller is loaded
    before the first: records/s counts the reading, the forward passes and the writing)."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.storage import LocalObjectStore
    from pipelines.weekly import PartitionRef, label_shard

    run_dir = work / f"label-{documents}"
    shutil.rmtree(run_dir, ignore_errors=True)
    bucket = run_dir / "store" / "mlops-data"
    config = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": f"file://{run_dir / 'store'}",
                                  "PIPELINE_BUCKET": "mlops-data", "PIPELINE_WORK_DIR": str(run_dir / "work")})
    (run_dir / "work").mkdir(parents=True)
    os.environ["PIPELINE_WORK_DIR"] = str(run_dir / "work")
    governance = dataclasses.replace(config.governance, label={**config.governance.label, "device": device,
                                                               "batch_size": batch_size})
    config = dataclasses.replace(config, governance=governance)
    store = LocalObjectStore(bucket)
    publish_bench_labeller(bucket, labeller)
    part = PartitionRef(domain=DOMAIN, interval=Interval.parse(WEEK), run_key="bench").shard_ref(0)
    rng = random.Random(7)
    texts = [document(rng, n, doc_bytes) for n in range(documents)]
    path = run_dir / "governed.parquet"
    pq.write_table(pa.table({"id": [f"d{n:08d}" for n in range(documents)], "text": texts,
                             "label": pa.array([None] * documents, type=pa.string()),
                             "source": ["landing"] * documents}), path)
    key = part.staging(config, "filtered.parquet")
    store.put_file(key, path)
    warm = part.shard_ref(1)  # warm-up on 256 documents: the labeller's download and load, a CUDA context
    pq.write_table(pq.read_table(path).slice(0, 256), run_dir / "warm.parquet")
    store.put_file(warm.staging(config, "filtered.parquet"), run_dir / "warm.parquet")
    label_shard(config=config, store=store, part=warm, key=warm.staging(config, "filtered.parquet"))
    rates, reports = [], []
    for _ in range(repeats):
        report = label_shard(config=config, store=store, part=part, key=key)
        rates.append(report["records_per_s"])
        reports.append(report)
    import torch

    gpu = None
    if reports[-1]["device"].startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(reports[-1]["device"]))
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"stage": "label_shard", "documents": documents, "doc_bytes": doc_bytes, "device": reports[-1]["device"],
            "gpu": gpu, "batch_size": reports[-1]["batch_size"], "records_per_s_runs": rates,
            "records_per_s": statistics.median(rates), "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------ one step (child)
def run_step(name: str, key: str, shard: int | None = None, shards: int = 1) -> dict:
    """Run one step in this process (the child), as its DAG task does; returns its result as a dict."""
    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.storage import open_store
    from pipelines.weekly import (
        PartitionRef, auto_label, clean_shard, clean_text, decide_shards, filter_sensitive, find_duplicates,
        finish_ingest, finish_labels, finish_shard, govern_shard, ingest_files, ingest_landing, label_shard,
        mask_pii, number_pii, plan_ingest, publish_partition, standardize_records, validate_batch,
    )

    config = load_config()
    store = open_store(config)
    part = PartitionRef(domain=DOMAIN, interval=Interval.parse(WEEK), run_key="bench")
    chain = {"standardize": standardize_records, "cleaned": clean_text, "masked": mask_pii,
             "filtered": filter_sensitive, "dedup": find_duplicates, "labelled": auto_label}
    per_shard = {"clean_shard": clean_shard, "govern_shard": govern_shard, "finish_shard": finish_shard}
    if name == "ingest":
        return ingest_landing(config=config, store=store, part=part).to_dict()
    if name == "plan_ingest":  # the DAG's ingest_landing task: the listing and the groups of landing files
        return {"key": "", "groups": len(plan_ingest(config=config, store=store, part=part)["groups"])}
    if name == "ingest_files":
        report = ingest_files(config=config, store=store, part=part, group=shard)
        return {"key": "", "parsed": report["parsed"], "shards": len(report["shards"])}
    if name == "plan_shards":  # the DAG's plan_shards task: the ingest report from the groups'
        result = finish_ingest(config=config, store=store, part=part)
        return {"key": result.key, "shards": list(result.shards)}
    if name in per_shard:
        return {"key": per_shard[name](config=config, store=store, part=part.shard_ref(shard), key=key)}
    if name == "label_shard":
        return {**label_shard(config=config, store=store, part=part.shard_ref(shard), key=key), "key": key}
    if name == "number_pii":
        return {"distinct": number_pii(config=config, store=store, part=part, shards=shards)}
    if name == "find_duplicates":  # the DAG's find_duplicates task: gather_shards, then the dedup decision
        tasks = decide_shards(config=config, store=store, part=part)
        return {"key": part.staging(config, "deduplicated.parquet"), "shards": [t.key for t in tasks]}
    if name == "labelled" and shards > 1:  # the DAG's auto_label task: finish_shard labelled the shards
        return finish_labels(config=config, store=store, part=part, key=key).to_dict()
    if name in chain:
        return chain[name](config=config, store=store, part=part, key=key).to_dict()
    if name == "validate":
        return validate_batch(config=config, store=store, part=part, key=key).to_dict()
    if name == "publish":
        return publish_partition(config=config, store=store, part=part, key=key).to_dict()
    raise SystemExit(f"unknown step {name!r}: use one of {', '.join(STEPS)}")


# ------------------------------------------------------------------------------------ measuring (parent)
def tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def folder_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for base, _dirs, names in os.walk(folder):
            for name in names:
                try:
                    total += os.lstat(os.path.join(base, name)).st_size
                except OSError:
                    pass
    return total


def measure_step(name: str, key: str, env: dict, *, disk_folders: tuple[Path, ...], poll: float = 0.1) -> dict:
    """Run one step in a child process; its result, seconds, peak RSS of its tree and peak disk."""
    measured = measure_stage([["--step", name, "--key", key]], env, workers=1, disk_folders=disk_folders, poll=poll)
    (measured["result"],) = measured.pop("results")
    return measured


def measure_stage(commands: list[list[str]], env: dict, *, workers: int, disk_folders: tuple[Path, ...],
                  poll: float = 0.1) -> dict:
    """Run one child process per command, at most ``workers`` at a time; their results (in order), the
    stage's seconds, the peak RSS of all its running process trees together and the peak disk."""
    import psutil

    started = time.perf_counter()
    pending = list(enumerate(commands))
    running: dict[int, tuple] = {}  # index: (child, its psutil.Process, stdout file, stderr file)
    results: list[dict | None] = [None] * len(commands)
    peak = {"rss": 0, "disk": 0}
    ticks = 0
    while pending or running:
        while pending and len(running) < workers:
            i, command = pending.pop(0)
            # Output to files, not pipes: a child that logs more than a pipe holds would block until read.
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *command], env=env,
                                     stdout=out, stderr=err, text=True, cwd=ROOT)
            running[i] = (child, psutil.Process(child.pid), out, err)
        total = 0
        for _child, proc, _out, _err in running.values():
            try:
                total += tree_rss(proc)
            except psutil.Error:
                pass
        peak["rss"] = max(peak["rss"], total)
        if ticks % 5 == 0:  # the disk walk every 0.5 s
            peak["disk"] = max(peak["disk"], folder_bytes(*disk_folders))
        ticks += 1
        time.sleep(poll)
        for i, (child, _proc, out, err) in list(running.items()):
            if child.poll() is None:
                continue
            del running[i]
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
            out.close()
            err.close()
            if child.returncode != 0:
                for other, *_rest in running.values():
                    other.kill()
                raise RuntimeError(f"{' '.join(commands[i])} failed ({child.returncode}):\n{stderr[-4000:]}")
            results[i] = json.loads(stdout.strip().splitlines()[-1])
    peak["disk"] = max(peak["disk"], folder_bytes(*disk_folders))
    return {"results": results, "seconds": time.perf_counter() - started, "peak_rss_mb": peak["rss"] / 2**20,
            "peak_disk_mb": peak["disk"] / 2**20}


def _environment(store_root: Path, temp: Path, *, batch_rows: int | None, max_object_bytes: int | None,
                 shard_records: int, shard_bytes: int = 0) -> dict:
    env = {**os.environ, "PIPELINE_S3_ENDPOINT_URL": f"file://{store_root}", "PIPELINE_BUCKET": "mlops-data",
           "PIPELINE_WORK_DIR": str(temp), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "PIPELINE__INGEST__SHARD_RECORDS": str(shard_records), "PIPELINE__INGEST__SHARD_BYTES": str(shard_bytes)}
    env.pop("PIPELINE_S3_IDENTITY", None)
    if batch_rows:
        env["PIPELINE__INGEST__BATCH_ROWS"] = str(batch_rows)
    if max_object_bytes:
        env["PIPELINE__INGEST__MAX_OBJECT_BYTES"] = str(max_object_bytes)
    return env


def _print_step(documents: int, name: str, measured: dict) -> None:
    print(f"  {documents:>9,} docs  {name:<12} {measured['seconds']:8.1f} s  {measured['docs_per_s']:9.0f} docs/s  "
          f"{measured['mb_per_s']:7.1f} MB/s  peak RSS {measured['peak_rss_mb']:7.0f} MB  "
          f"disk {measured['peak_disk_mb']:7.0f} MB", flush=True)


def run_week(documents: int, *, doc_bytes: int, dup_share: float, file_docs: int, work: Path,
             batch_rows: int | None = None, max_object_bytes: int | None = None, labeller: Path | None = None) -> dict:
    """Land one week of ``documents`` and run every step on it, unsharded; returns the run's figures."""
    run_dir = work / f"n{documents}"
    shutil.rmtree(run_dir, ignore_errors=True)
    store_root = run_dir / "store"
    bucket = store_root / "mlops-data"
    temp = run_dir / "work"
    temp.mkdir(parents=True)
    landed = land_week(bucket, documents=documents, doc_bytes=doc_bytes, dup_share=dup_share, file_docs=file_docs)
    if labeller:
        publish_bench_labeller(bucket, labeller)
    env = _environment(store_root, temp, batch_rows=batch_rows, max_object_bytes=max_object_bytes, shard_records=0)
    mb = landed["bytes"] / 1e6
    steps: dict[str, dict] = {}
    key = ""
    load = os.getloadavg()[0]
    for name in STEPS:
        measured = measure_step(name, key, env, disk_folders=(bucket / "staging", temp))
        result = measured.pop("result")
        key = result.get("key", key)
        measured.update(docs_per_s=documents / measured["seconds"], mb_per_s=mb / measured["seconds"])
        steps[name] = {k: round(v, 2) for k, v in measured.items()}
        if name == "publish":
            steps[name]["published"] = result.get("published")
            steps[name]["counts"] = result.get("counts", {}).get("records")
        _print_step(documents, name, measured)
    manifest_counts = steps["publish"].get("counts")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"documents": documents, "doc_bytes": doc_bytes, "input_mb": round(mb, 1), "files": landed["files"],
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s in steps.values()), 1),
            "seconds": round(sum(s["seconds"] for s in steps.values()), 1), "workers": 1,
            "peak_disk_mb": round(max(s["peak_disk_mb"] for s in steps.values()), 1),
            "docs_per_s": round(documents / sum(s["seconds"] for s in steps.values()), 1),
            "records": manifest_counts, "load_average_at_start": round(load, 2),
            "batch_rows": batch_rows, "labeller": bool(labeller), "steps": steps}


def run_sharded_week(documents: int, *, workers: list[int], shard_records: int, doc_bytes: int, dup_share: float,
                     file_docs: int, work: Path, batch_rows: int | None = None,
                     max_object_bytes: int | None = None, labeller: Path | None = None, repeats: int = 1) -> list[dict]:
    """Land one week of ``documents`` once and run it sharded with each worker count in ``workers`` (a fresh
    store each time, the same landing files), ``repeats`` times over, the worker counts interleaved (1, 2, 1,
    2, ...: drift of the machine hits both alike). Returns one run's figures per worker count: the median run
    by seconds (of an even number, the slower middle one), with every run's seconds in ``seconds_runs``."""
    run_dir = work / f"n{documents}-sharded"
    shutil.rmtree(run_dir, ignore_errors=True)
    source = run_dir / "landed"
    landed = land_week(source, documents=documents, doc_bytes=doc_bytes, dup_share=dup_share, file_docs=file_docs)
    mb = landed["bytes"] / 1e6
    # The landing files are parsed in groups of about one shard's bytes (ingest_files, one task each); 1 %
    # slack, so that files of equal size fill a group exactly.
    shard_bytes = int(landed["bytes"] * shard_records / documents * 1.01)
    runs = []
    for w in [w for _ in range(repeats) for w in workers]:
        store_root = run_dir / f"store-w{w}"
        bucket = store_root / "mlops-data"
        temp = run_dir / f"work-w{w}"
        temp.mkdir(parents=True)
        shutil.copytree(source / "landing", bucket / "landing", copy_function=os.link)  # same files, no copy
        if labeller:
            publish_bench_labeller(bucket, labeller)
        env = _environment(store_root, temp, batch_rows=batch_rows, max_object_bytes=max_object_bytes,
                           shard_records=shard_records, shard_bytes=shard_bytes)
        disk = (bucket / "staging", temp)
        steps: dict[str, dict] = {}
        load = os.getloadavg()[0]
        key, shards = "", []
        for name in SHARDED_STEPS:
            predicted = None
            if name in PER_SHARD:
                commands = [["--step", name, "--key", k, "--shard", str(i)] for i, k in enumerate(shards)]
                measured = measure_stage(commands, env, workers=w, disk_folders=disk)
                results = measured.pop("results")
                if name not in ("ingest_files", "finish_shard"):  # the next step reads the partition's key
                    shards = [r["key"] for r in results]
                if name == "label_shard":
                    predicted = sum(r.get("predicted", 0) for r in results)
            else:
                command = ["--step", name, "--key", key, "--shards", str(len(shards))]
                measured = measure_stage([command], env, workers=1, disk_folders=disk)
                (result,) = measured.pop("results")
                key = result.get("key", key)
                if name == "plan_ingest":
                    shards = [""] * result["groups"]  # ingest_files is mapped over the groups
                if name == "find_duplicates":
                    shards = result["shards"]
                if name == "plan_shards":
                    shards = result["shards"]
                    if len(shards) < 2:
                        raise SystemExit(f"{documents} documents at --shard-records {shard_records}: one shard; "
                                         "lower --shard-records")
            measured.update(docs_per_s=documents / measured["seconds"], mb_per_s=mb / measured["seconds"])
            steps[name] = {k: round(v, 2) for k, v in measured.items()}
            if predicted is not None:
                steps[name].update(predicted=predicted,
                                   records_per_s=round(predicted / measured["seconds"], 1) if predicted else None)
            if name == "publish":
                steps[name]["published"] = result.get("published")
                steps[name]["counts"] = result.get("counts", {}).get("records")
            _print_step(documents, f"{name} w={w}", measured)
        seconds = sum(s["seconds"] for s in steps.values())
        sharded = sum(steps[name]["seconds"] for name in PER_SHARD)
        runs.append({"documents": documents, "doc_bytes": doc_bytes, "input_mb": round(mb, 1), "files": landed["files"],
                     "peak_rss_mb": round(max(s["peak_rss_mb"] for s in steps.values()), 1),
                     "seconds": round(seconds, 1), "workers": w,
                     "peak_disk_mb": round(max(s["peak_disk_mb"] for s in steps.values()), 1),
                     "docs_per_s": round(documents / seconds, 1), "records": steps["publish"].get("counts"),
                     "load_average_at_start": round(load, 2), "batch_rows": batch_rows,
                     "shard_records": shard_records, "shard_bytes": shard_bytes, "shards": len(shards),
                     "per_shard_seconds": round(sharded, 1), "per_shard_docs_per_s": round(documents / sharded, 1),
                     "labeller": bool(labeller), "steps": steps})
        print(f"{documents:,} documents, {len(shards)} shards, {w} worker(s): {seconds:.0f} s, "
              f"{documents / seconds:.0f} docs/s (shard tasks: {sharded:.0f} s, {documents / sharded:.0f} docs/s)",
              flush=True)
        shutil.rmtree(store_root, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return [median_run([r for r in runs if r["workers"] == w]) for w in dict.fromkeys(workers)]


def median_run(runs: list[dict]) -> dict:
    """The median of repeated runs by seconds (of an even number, the slower middle one), with the seconds
    and documents/s of every run (in the order they ran) and their spread."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = ordered[len(ordered) // 2]
    seconds = [r["seconds"] for r in runs]
    return {**median, "repeats": len(runs), "seconds_runs": seconds,
            "docs_per_s_runs": [r["docs_per_s"] for r in runs],
            "spread_pct": round(100 * (max(seconds) - min(seconds)) / median["seconds"], 1)}


def _merged(out: Path, runs: list[dict]) -> list[dict]:
    """The runs already in ``out`` followed by ``runs``; a kept run measured again (same documents, doc_bytes,
    workers, shard_records and labeller) is replaced by the new one."""
    def same(run: dict) -> tuple:
        return run["documents"], run["doc_bytes"], run["workers"], run.get("shard_records"), run.get("labeller", False)

    old = json.loads(out.read_text())["runs"] if out.exists() else []
    new = {same(r) for r in runs}
    return [r for r in old if same(r) not in new] + runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--doc-bytes", type=int, default=7500)
    parser.add_argument("--dup-share", type=float, default=0.05)
    parser.add_argument("--file-docs", type=int, default=5000, help="documents per landing file")
    parser.add_argument("--batch-rows", type=int, default=None, help="override ingest.batch_rows")
    parser.add_argument("--max-object-bytes", type=int, default=None, help="override ingest.max_object_bytes")
    parser.add_argument("--work", type=Path, default=None, help="folder for the store (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_scale.json")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="run the week sharded, with each of these numbers of concurrent worker processes")
    parser.add_argument("--shard-records", type=int, default=None,
                        help="ingest.shard_records of a sharded run (default: an eighth of the week)")
    parser.add_argument("--labeller", action="store_true",
                        help="publish a labeller for the week, so that label_shard / auto_label predict every document "
                             "(~40 documents/s a CPU core: use with small weeks on a CPU)")
    parser.add_argument("--label-only", type=int, default=None, metavar="N",
                        help="time label_shard alone on N unlabelled documents in this process (with --label-device, "
                             "e.g. cuda on a GPU host); adds to the JSON's 'label' list")
    parser.add_argument("--label-device", default="auto", help="governance.label.device of --label-only (auto)")
    parser.add_argument("--label-batch-size", type=int, default=0, help="governance.label.batch_size of --label-only")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of --label-only (default 3) or of each --workers count (default 1), "
                             "the median reported")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:  # the child: one step
        print(json.dumps(run_step(args.step, args.key, args.shard, args.shards)))
        return 0
    if args.workers and min(args.workers) < 1:
        parser.error("--workers: use numbers >= 1")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats: use a number >= 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="ingest-scale-"))
    labeller = train_bench_labeller(work / "labeller" / DOMAIN) if (args.labeller or args.label_only) else None
    command = " ".join(["benchmarks/ingest_scale.py", *(argv if argv is not None else sys.argv[1:])])
    if args.label_only:
        run = run_label_only(args.label_only, doc_bytes=args.doc_bytes, device=args.label_device,
                             batch_size=args.label_batch_size, work=work, labeller=labeller,
                             repeats=args.repeats or 3)
        print(f"label_shard: {run['documents']:,} documents on {run['device']} ({run['gpu'] or 'CPU'}), batch "
              f"{run['batch_size']}: {run['records_per_s']:.0f} records/s (runs {run['records_per_s_runs']})")
        body = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "ingest_scale", "runs": []}
        key = (run["documents"], run["device"], run["gpu"], run["batch_size"])
        body["label"] = [r for r in body.get("label", [])
                         if (r["documents"], r["device"], r["gpu"], r["batch_size"]) != key] + [{**run, "command": command}]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(body, indent=1) + "\n")
        print(f"wrote {args.out}")
        return 0
    runs = []
    for n in args.documents:
        if args.workers:
            runs.extend(run_sharded_week(n, workers=args.workers, shard_records=args.shard_records or -(-n // 8),
                                         doc_bytes=args.doc_bytes, dup_share=args.dup_share, file_docs=args.file_docs,
                                         work=work, batch_rows=args.batch_rows, max_object_bytes=args.max_object_bytes,
                                         labeller=labeller, repeats=args.repeats or 1))
            continue
        runs.append(run_week(n, doc_bytes=args.doc_bytes, dup_share=args.dup_share, file_docs=args.file_docs,
                             work=work, batch_rows=args.batch_rows, max_object_bytes=args.max_object_bytes,
                             labeller=labeller))
        print(f"{n:,} documents: peak RSS {runs[-1]['peak_rss_mb']:.0f} MB, {runs[-1]['seconds']:.0f} s, "
              f"peak disk {runs[-1]['peak_disk_mb']:.0f} MB ({runs[-1]['input_mb']:.0f} MB landed)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": "ingest_scale", "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "command": command,
            "runs": _merged(args.out, [{**r, "command": command} for r in runs]),
            "label": json.loads(args.out.read_text()).get("label", []) if args.out.exists() else []}
    args.out.write_text(json.dumps(body, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
