"""Benchmark the dedup index as history grows: requests and bytes per week, before and after the two-level layout.

Simulates ``--weeks`` weeks of ``--per-week`` distinct hashes (``--dup-rate`` of them copies of hashes
from random earlier weeks), each week as the flow runs it: a fresh ``HashIndex`` (each task is a new
process, so nothing is cached), ``lookup`` of the week's hashes, then ``add`` of its signature set.
The same weeks run against the index code of a git revision (``--before``, default ``BEFORE``: per-bucket
whole segments, whole-bucket compaction) and against the working tree, each on its own folder store
that counts GETs, bytes read, PUTs, bytes written, DELETEs and LISTs. Both must give the same answers
for every hash of every week (checked). A second case shows objects written per week at
``--many-buckets`` (the advice the old docs gave).

Usage (from the project root):
    .venv/bin/python benchmarks/dedup_index.py [--weeks 40] [--per-week 100000] [--buckets 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.dedup import index as new_index  # noqa: E402
from pipelines.storage import LocalObjectStore  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "dedup_index.json"


class CountingStore:
    """A folder store that counts what the index asks of it; ranged reads are file seeks."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalObjectStore(root)
        self.reset()

    def reset(self) -> None:
        self.counts = {"gets": 0, "bytes_read": 0, "puts": 0, "bytes_written": 0, "deletes": 0, "lists": 0}

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self.counts["gets"] += 1
        self.counts["bytes_read"] += len(data)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with open(self.inner._path(key), "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
        self.counts["gets"] += 1
        self.counts["bytes_read"] += len(data)
        return data

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        written = self.inner.put(key, data, if_none_match=if_none_match)
        self.counts["puts"] += 1
        self.counts["bytes_written"] += len(data) if written else 0
        return written

    def delete(self, key: str) -> None:
        self.counts["deletes"] += 1
        self.inner.delete(key)

    def list(self, prefix: str, *, start_after: str = ""):
        items = list(self.inner.list(prefix, start_after=start_after))
        self.counts["lists"] += max(1, -(-len(items) // 1000))  # S3 pages of 1,000 keys
        return iter(items)

    def footprint(self, prefix: str) -> tuple[int, int]:
        items = list(self.inner.list(prefix))
        return len(items), sum(i.size for i in items)


# main as issue 15 started: per-bucket segments read whole (the layout this benchmark compares against)
BEFORE = "824f751e9a8c8a91f78129d24ecb016fbd829b6b"

def load_before(revision: str) -> types.ModuleType | None:
    """``pipelines/dedup/index.py`` as it was at ``revision`` (None without git or that revision)."""
    try:
        source = subprocess.run(["git", "show", f"{revision}:pipelines/dedup/index.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if "DDXSEG2" in source:
        return None  # that revision already has this layout: nothing to compare with
    module = types.ModuleType("dedup_index_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:pipelines/dedup/index.py", "exec"), module.__dict__)
    return module


def make_weeks(weeks: int, per_week: int, dup_rate: float, seed: int):
    """Each week's distinct hashes (a share of them copies from earlier weeks) and its first day."""
    rng = np.random.default_rng(seed)
    history = np.empty(0, "S32")
    for week in range(weeks):
        copies = int(per_week * dup_rate) if len(history) else 0
        fresh = np.frombuffer(rng.bytes(32 * (per_week - copies)), "S32")
        old = history[rng.choice(len(history), copies, replace=False)] if copies else np.empty(0, "S32")
        hashes = np.concatenate([fresh, old])
        yield week, hashes[rng.permutation(len(hashes))], 20_000 + 7 * week
        history = np.concatenate([history, fresh])


def run_case(module, root: Path, *, weeks: int, per_week: int, buckets: int, compact_after: int, dup_rate: float,
             seed: int) -> tuple[list[dict], list[np.ndarray]]:
    store = CountingStore(root)
    rows, answers = [], []
    history = 0
    for week, hashes, day in make_weeks(weeks, per_week, dup_rate, seed):
        store.reset()
        index = module.HashIndex(store=store, prefix="index/bench", buckets=buckets, compact_after=compact_after)
        started = time.perf_counter()
        earliest = index.lookup(hashes)
        looked = dict(store.counts)
        entries = np.empty(len(hashes), module.ENTRY)
        entries["h"], entries["d"] = hashes, day
        written = index.add(entries, tag=f"w{week:03d}")
        seconds = time.perf_counter() - started
        objects, size = store.footprint("index/bench/")
        rows.append({"week": week, "history_entries": history, "index_objects": objects, "index_bytes": size,
                     "lookup_gets": looked["gets"], "lookup_bytes_read": looked["bytes_read"],
                     "lookup_lists": looked["lists"], "compaction_puts": looked["puts"],
                     "compaction_bytes_written": looked["bytes_written"], "deletes": store.counts["deletes"],
                     "segments_added": len(written), "add_bytes_written": store.counts["bytes_written"] - looked["bytes_written"],
                     "seconds": round(seconds, 3)})
        history += int((earliest == module.ABSENT).sum())
        answers.append(earliest)
    return rows, answers


def summarize(rows: list[dict]) -> dict:
    last = rows[len(rows) // 2:]
    return {
        "mean_bytes_read_per_week_second_half": int(np.mean([r["lookup_bytes_read"] for r in last])),
        "mean_bytes_read_over_index_second_half": round(float(np.mean(
            [r["lookup_bytes_read"] / max(1, rows[i - 1]["index_bytes"]) for i, r in enumerate(rows) if r in last])), 4),
        "mean_bytes_written_per_week": int(np.mean([r["compaction_bytes_written"] + r["add_bytes_written"] for r in rows])),
        "max_gets_per_week": max(r["lookup_gets"] for r in rows),
        "max_objects_written_per_week": max(r["segments_added"] + r["compaction_puts"] for r in rows),
        "final_index_objects": rows[-1]["index_objects"], "final_index_bytes": rows[-1]["index_bytes"],
        "seconds": round(sum(r["seconds"] for r in rows), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=40)
    parser.add_argument("--per-week", type=int, default=100_000)
    parser.add_argument("--buckets", type=int, default=256)
    parser.add_argument("--compact-after", type=int, default=8)
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--many-buckets", type=int, default=65536, help="second case: objects per week at this B (0: skip)")
    parser.add_argument("--many-weeks", type=int, default=2)
    parser.add_argument("--before", default=BEFORE, help="git revision whose index.py is the 'before' code "
                        "(default: main before the segment summaries)")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)

    before = load_before(args.before)
    impls = [("before", before), ("after", new_index)] if before is not None else [("after", new_index)]
    results: dict = {"config": {k: getattr(args, k) for k in ("weeks", "per_week", "buckets", "compact_after",
                                                                "dup_rate", "many_buckets", "many_weeks", "before", "seed")},
                     "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for case, buckets, weeks in (("history", args.buckets, args.weeks), ("many_buckets", args.many_buckets, args.many_weeks)):
            if not buckets or not weeks:
                continue
            answers = {}
            for name, module in impls:
                rows, answers[name] = run_case(module, Path(tmp) / f"{case}-{name}", weeks=weeks, per_week=args.per_week,
                                               buckets=buckets, compact_after=args.compact_after, dup_rate=args.dup_rate,
                                               seed=args.seed)
                results["runs"].append({"case": case, "impl": name, "buckets": buckets, "summary": summarize(rows), "weeks": rows})
                s = results["runs"][-1]["summary"]
                print(f"{case:13s} {name:6s} B={buckets:<6d} read/week (2nd half) {s['mean_bytes_read_per_week_second_half'] / 1e6:8.2f} MB"
                      f" ({100 * s['mean_bytes_read_over_index_second_half']:5.1f} % of the index), written/week"
                      f" {s['mean_bytes_written_per_week'] / 1e6:7.2f} MB, max GETs {s['max_gets_per_week']:6d},"
                      f" max objects written {s['max_objects_written_per_week']:6d}, {s['seconds']:.1f} s", flush=True)
            if len(answers) == 2:
                same = all((a == b).all() for a, b in zip(answers["before"], answers["after"]))
                results.setdefault("same_answers", {})[case] = bool(same)
                if not same:
                    print(f"{case}: before and after disagree", file=sys.stderr)
                    return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
