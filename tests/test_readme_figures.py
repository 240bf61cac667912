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


INGEST_TABLE_STAGES = ("parse", "standardize", "clean", "pii", "sensitive", "label", "dedup", "dedup.hash",
                       "dedup.lookup", "dedup.decide", "raw_sha256", "gx", "gx_whole", "publish")


def test_benchmarks_ingest_table_matches_the_saved_run():
    """Every records/s figure and target verdict of the ingest table comes from benchmarks/results/ingest.json."""
    import json

    result = json.loads((ROOT / "benchmarks" / "results" / "ingest.json").read_text(encoding="utf-8"))
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    table = page.split("| stage | records/s | target |", 1)[1].split("\n\n", 1)[0]
    missing = [stage for stage in INGEST_TABLE_STAGES
               if f"{round(result['stages'][stage]['records_per_s']):,}" not in table]
    assert missing == []
    targets = result["targets"]
    assert f"met ({targets['dedup_over_raw_sha256']['value']:.3f})" in table
    assert targets["dedup_over_raw_sha256"]["met"] is True
    assert f"missed ({targets['sensitive_filter_over_dedup']['value']:.2f})" in table
    assert targets["sensitive_filter_over_dedup"]["met"] is False
    assert f"{result['records']:,} records" in page


def test_serving_limits_figures_match_their_json():
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "serving_limits.json").read_text())
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    section = page.split("## Serving limits before authentication", 1)[1].split("\n## ", 1)[0]
    med = results["median"]
    assert f"**{results['rps_ratio_with_to_without']}**" in section
    assert f"**{results['median_of_round_ratios']}**" in section
    assert f"({med['with_limits']['rps']} vs {med['without_limits']['rps']})" in section
    assert f"{len(results['rounds'])} rounds each" in section and results["within_5_percent"] is True


def test_dp_largest_block_equals_the_rendered_json():
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import dp_largest

    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    report = json.loads((ROOT / "benchmarks" / "results" / "dp_largest.json").read_text())
    assert _block(page, "dp_largest") == dp_largest.render(report)
    assert {mode: block["largest_dp"] for mode, block in report["modes"].items()} == {"lora": "qwen2-32b",
                                                                                       "full": "qwen2-7b"}


def test_code_decoding_block_equals_the_rendered_json():
    import json

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import code_domain

    result = json.loads((ROOT / "benchmarks" / "results" / "code_domain.json").read_text(encoding="utf-8"))
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert _block(page, "code_decoding") == code_domain.render(result)
    docs = (ROOT / "docs" / "CODE.md").read_text(encoding="utf-8")
    for d in result["decoding"]:
        cost = d["constraint_cost"]
        assert f"{d['size']} model {cost['json'] * 100:.1f} % / {cost['python'] * 100:.1f} %" in docs


def test_sharded_ingest_figures_match_their_json():
    import json

    runs = json.loads((ROOT / "benchmarks" / "results" / "ingest_scale.json").read_text())["runs"]
    sharded = [r for r in runs if r.get("shard_records")]
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    section = page.split("## A sharded week on 1 vs 2 workers", 1)[1].split("\n## ", 1)[0]
    for run in sharded:
        assert (f"| {run['documents']:,} | {run['workers']} | {run['seconds']} | {run['docs_per_s']} | "
                f"{run['per_shard_seconds']} | {run['per_shard_docs_per_s']} | {run['peak_rss_mb']} MB | "
                f"{run['peak_disk_mb']} MB |") in section
    for documents in sorted({r["documents"] for r in sharded}):
        one, two = (next(r for r in sharded if r["documents"] == documents and r["workers"] == w) for w in (1, 2))
        assert f"**{two['docs_per_s'] / one['docs_per_s']:.2f}x**" in section
