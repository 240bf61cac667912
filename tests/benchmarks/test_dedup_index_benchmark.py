"""``benchmarks/dedup_index.py`` on a tiny history: writes its JSON, before and after agree on every answer."""

from __future__ import annotations

import json

from benchmarks.dedup_index import main


def test_tiny_run_compares_before_and_after(tmp_path):
    out = tmp_path / "dedup_index.json"
    assert main(["--weeks", "4", "--per-week", "600", "--buckets", "8", "--many-buckets", "1024",
                 "--many-weeks", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    runs = {(r["case"], r["impl"]): r for r in results["runs"]}
    assert set(runs) == {("history", "before"), ("history", "after"), ("many_buckets", "before"), ("many_buckets", "after")}
    assert results["same_answers"] == {"history": True, "many_buckets": True}
    assert [w["week"] for w in runs[("history", "after")]["weeks"]] == [0, 1, 2, 3]
    assert runs[("many_buckets", "after")]["summary"]["max_objects_written_per_week"] <= 256
    assert runs[("many_buckets", "before")]["summary"]["max_objects_written_per_week"] > 256
