"""The README stays a short front page, and the measured figures stay generated from the saved results.

The multi-GPU table in benchmarks/README.md is rendered from ``benchmarks/results/multi_gpu_h200x2.json`` by
``benchmarks/render_results.py``, never typed in; the README only links to it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_BYTES = 10_500


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"\n<!-- {name}:end -->", 1)[0].strip()


def test_benchmarks_multi_gpu_block_equals_the_rendered_json():
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    rendered = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_results.py"),
                               str(ROOT / "benchmarks" / "results" / "multi_gpu_h200x2.json")],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert _block(page, "multi_gpu") == rendered
    assert "| hooks | 2 |" in rendered and "1.73x" in rendered


def test_readme_stays_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, (f"README.md is {size} bytes (limit {README_MAX_BYTES}): move details to docs/ "
                                      "or benchmarks/README.md and link them")


def test_readme_and_docs_links_resolve():
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_readme_lists_every_top_level_package_of_pipelines():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in (ROOT / "pipelines").glob("*/__init__.py"))
    missing = [name for name in packages
               if f"`pipelines/{name}/`" not in readme and not re.search(rf"`{name}/`", readme)]
    assert missing == []
