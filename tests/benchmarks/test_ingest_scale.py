"""``benchmarks/ingest_scale.py`` at a tiny size: every step runs in its own process and the JSON has the
figures the issue asks for; the published counts reconcile with what was landed."""

from __future__ import annotations

import json

import pytest

from benchmarks.ingest_scale import STEPS, main


def test_tiny_week_runs_every_step_in_its_own_process_and_writes_the_figures(tmp_path):
    out = tmp_path / "ingest_scale.json"
    assert main(["--documents", "60", "--file-docs", "25", "--doc-bytes", "800", "--batch-rows", "16",
                 "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert (run["documents"], run["doc_bytes"], run["workers"], run["files"]) == (60, 800, 1, 3)
    assert run["peak_rss_mb"] > 0 and run["seconds"] > 0 and run["peak_disk_mb"] > 0
    assert list(run["steps"]) == list(STEPS)
    assert run["peak_rss_mb"] == pytest.approx(max(s["peak_rss_mb"] for s in run["steps"].values()), abs=0.1)
    records = run["records"]
    assert records["in"] == 60 == records["kept"] + records["duplicate"] + records["quarantined"]
    assert records["duplicate"] >= 1 and run["steps"]["publish"]["published"] is True
    assert not (tmp_path / "work" / "n60").exists()  # the store and work folders are removed


def test_sharded_week_on_one_and_two_workers_adds_its_runs_to_the_json(tmp_path):
    from benchmarks.ingest_scale import SHARDED_STEPS

    out = tmp_path / "ingest_scale.json"
    out.write_text(json.dumps({"runs": [{"documents": 5, "doc_bytes": 1, "workers": 1, "note": "kept"}]}))
    assert main(["--documents", "60", "--file-docs", "10", "--doc-bytes", "800", "--batch-rows", "16",
                 "--workers", "1", "2", "--shard-records", "20", "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    kept, one, two = json.loads(out.read_text())["runs"]
    assert kept["note"] == "kept"  # earlier runs stay
    assert (one["workers"], two["workers"]) == (1, 2) and one["shards"] == two["shards"] == 3
    for run in (one, two):
        assert list(run["steps"]) == list(SHARDED_STEPS) and run["shard_records"] == 20
        records = run["records"]
        assert records["in"] == 60 == records["kept"] + records["duplicate"] + records["quarantined"]
    assert one["records"] == two["records"]


def test_repeated_sharded_runs_report_the_median_and_every_run(tmp_path):
    from benchmarks.ingest_scale import median_run

    runs = [{"workers": 1, "seconds": s, "docs_per_s": round(100 / s, 1), "tag": t} for s, t in ((12, "a"), (10, "b"),
                                                                                               (15, "c"))]
    median = median_run(runs)
    assert median["tag"] == "a" and median["seconds_runs"] == [12, 10, 15] and median["repeats"] == 3
    assert median["spread_pct"] == round(100 * 5 / 12, 1) and median["docs_per_s_runs"] == [8.3, 10.0, 6.7]
    assert median_run(runs[:2])["tag"] == "a"  # of two, the slower
    assert median_run(runs[:1]) == runs[0]

    out = tmp_path / "ingest_scale.json"
    assert main(["--documents", "40", "--file-docs", "10", "--doc-bytes", "500", "--batch-rows", "16",
                 "--workers", "1", "2", "--shard-records", "20", "--repeats", "2", "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    one, two = json.loads(out.read_text())["runs"]
    assert (one["workers"], two["workers"]) == (1, 2)
    for run in (one, two):
        assert run["repeats"] == 2 and len(run["seconds_runs"]) == 2 and run["seconds"] == max(run["seconds_runs"])
    with pytest.raises(SystemExit):
        main(["--documents", "40", "--workers", "1", "--repeats", "0", "--out", str(out)])
