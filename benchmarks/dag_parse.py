"""Parse each DAG file in a fresh interpreter, as the dag-processor does, and time it.

For every ``dags/*.py``, ``--repeat`` times, a new Python process (``AIRFLOW_HOME`` a temporary folder,
``AIRFLOW__CORE__LOAD_EXAMPLES=False``, ``PYTHONPATH`` = repo root + ``plugins/``) imports Airflow's
``DagBag`` (timed apart: the processor has Airflow loaded already) and then bags that one file. It
prints per file the median parse time (``DagBag(dag_folder=<file>)``), the median Airflow import and
whole-process times, the DAG ids found, import errors, and which heavy modules (torch, transformers,
opacus, great_expectations, pandas, boto3) ended up in ``sys.modules``, and whether the DAG file or
Airflow itself brought them in.

Usage (from the project root):
    .venv/bin/python benchmarks/dag_parse.py [--repeat 3] [--dags dags] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "opacus", "great_expectations", "pandas", "boto3")

CHILD = """
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
before = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
heavy = sys.argv[2].split(",")
print(json.dumps({
    "airflow_import_s": imported - started,
    "parse_s": parsed - imported,
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
    "heavy_loaded": [m for m in heavy if m in sys.modules],
    "heavy_from_dag_file": [m for m in heavy if m in sys.modules and m not in before],
}))
"""


def parse_once(path: Path, airflow_home: Path) -> dict:
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), ",".join(HEAVY)], env=env,
                         capture_output=True, text=True, timeout=600)
    total = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"parsing {path} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = total
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Parse each DAG file in a fresh interpreter (like the dag-processor) and print the parse "
        "time per file (median of --repeat) and which heavy modules (torch, transformers, opacus, "
        "great_expectations, pandas, boto3) ended up in sys.modules.",
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh interpreters per file (default: %(default)s)")
    parser.add_argument("--dags", type=Path, default=ROOT / "dags", help="DAG folder (default: dags/)")
    parser.add_argument("--json", default="", help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    files = sorted(p for p in args.dags.glob("*.py") if not p.name.startswith("_"))
    if not files:
        parser.error(f"no DAG files in {args.dags}")

    results = []
    with tempfile.TemporaryDirectory(prefix="dag_parse_") as tmp:
        # One AIRFLOW_HOME for all runs; a first throw-away run creates airflow.cfg so no timed run pays for it.
        parse_once(files[0], Path(tmp))
        for path in files:
            runs = [parse_once(path, Path(tmp)) for _ in range(args.repeat)]
            last = runs[-1]
            results.append({
                "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                "parse_s": statistics.median(r["parse_s"] for r in runs),
                "parse_runs_s": [round(r["parse_s"], 4) for r in runs],
                "airflow_import_s": statistics.median(r["airflow_import_s"] for r in runs),
                "process_s": statistics.median(r["process_s"] for r in runs),
                "dag_ids": last["dag_ids"], "import_errors": last["import_errors"],
                "heavy_loaded": last["heavy_loaded"], "heavy_from_dag_file": last["heavy_from_dag_file"],
            })

    print(f"{len(files)} DAG file(s), {args.repeat} fresh interpreter(s) each; medians")
    print(f"  {'file':<34} {'parse s':>8} {'airflow import s':>17} {'process s':>10}  dags / heavy modules in sys.modules")
    for r in results:
        heavy = ", ".join(r["heavy_loaded"]) or "none"
        from_dag = f" (from the DAG file: {', '.join(r['heavy_from_dag_file'])})" if r["heavy_from_dag_file"] else ""
        print(f"  {r['file']:<34} {r['parse_s']:>8.3f} {r['airflow_import_s']:>17.2f} {r['process_s']:>10.2f}  "
              f"{', '.join(r['dag_ids']) or 'NO DAG'} / heavy: {heavy}{from_dag}")
        for key, error in r["import_errors"].items():
            print(f"      IMPORT ERROR {key}: {error.strip().splitlines()[-1] if error.strip() else error}")
    for name in HEAVY:
        loaded = [r["file"] for r in results if name in r["heavy_loaded"]]
        print(f"  {name:<20} {'in sys.modules after: ' + ', '.join(loaded) if loaded else 'not loaded by any DAG file'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"python": sys.version.split()[0], "files": results}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(r["import_errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
