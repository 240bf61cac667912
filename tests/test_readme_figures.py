"""The README's multi-GPU table is generated from the saved measurement, not typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_multi_gpu_block_equals_the_rendered_json():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- multi_gpu:begin -->\n", 1)[1].split("\n<!-- multi_gpu:end -->", 1)[0].strip()
    rendered = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_results.py"),
                               str(ROOT / "benchmarks" / "results" / "multi_gpu_h200x2.json")],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert block == rendered
    assert "| hooks | 2 |" in block and "1.73x" in block
