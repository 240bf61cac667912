"""Scrubbing before and after the per-line prefilter and memo in front of detect-secrets, side by side in one run.

"Before" is ``pipelines/code/scrub.py`` at a given git revision (default ``4e772a7``, the last one without the
prefilter), loaded from ``git show``; "after" is the working tree's. Over the project's own Python files
(``pipelines/``, ``tests/``, ``benchmarks/``, ``dags/``) the two outputs are first checked identical (text and
problem, file by file), then each round times both over all files, alternating which goes first.

Usage (from the project root):
    .venv/bin/python benchmarks/code_scrub_ab.py      # writes benchmarks/results/code_scrub_ab.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_before(revision: str):
    source = subprocess.run(["git", "show", f"{revision}:pipelines/code/scrub.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "scrub_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("scrub_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scrub_before"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="4e772a7")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "code_scrub_ab.json")
    args = parser.parse_args()
    from pipelines.code import scrub as after

    before = load_before(args.before)
    texts = [p.read_text(encoding="utf-8") for d in ("pipelines", "tests", "benchmarks", "dags")
             for p in sorted((ROOT / d).rglob("*.py"))]
    differ = [i for i, t in enumerate(texts)
              if (lambda a, b: (a.text, a.problem) != (b.text, b.problem))(before.scrub_text(t), after.scrub_text(t))]
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = (("before", before), ("after", after)) if r % 2 == 0 else (("after", after), ("before", before))
        for name, module in order:
            start = time.perf_counter()
            for text in texts:
                module.scrub_text(text)
            seconds[name].append(round(time.perf_counter() - start, 3))
    best = {k: min(v) for k, v in seconds.items()}
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "before_revision": args.before,
              "files": len(texts), "megabytes": round(sum(len(t.encode()) for t in texts) / 1e6, 3),
              "outputs_differ": len(differ), "seconds": seconds,
              "files_per_s": {k: round(len(texts) / v, 1) for k, v in best.items()},
              "speedup": round(best["before"] / best["after"], 2)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
