"""Architecture boundaries: pipelines/ never imports Airflow.

That parsing a DAG file loads no heavy module is checked by behaviour (a fresh interpreter's sys.modules) in
tests/dags/test_dag_integrity.py::test_parsing_imports_no_heavy_module.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pipelines_never_imports_airflow_statically():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "pipelines").rglob("*.py") if "airflow" in _imports(p)]
    assert offenders == []


def test_importing_every_pipelines_module_loads_no_airflow():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "pipelines").rglob("*.py") if p.name != "__main__.py"
    )
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
