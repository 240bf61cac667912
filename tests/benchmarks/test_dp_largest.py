"""``benchmarks/dp_largest.py --smoke`` runs on CPU and writes the report the H200 run writes."""

from __future__ import annotations

import json

from benchmarks.dp_largest import main


def test_smoke_run_trains_every_mode_and_method_with_checkpointing(tmp_path):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "dp_largest.json"
    assert main(["--smoke", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["settings"]["activation_checkpointing"].startswith("non-reentrant")
    assert sorted(report["modes"]) == ["full", "lora"]
    for mode, found in report["modes"].items():
        assert found["largest_dp"] == "smoke"
        (entry,) = found["sizes"]
        assert entry["dp_fits"] is True
        assert [r["method"] for r in entry["runs"]] == ["non_private", "ghost", "bk"]
        for run in entry["runs"]:
            assert "error" not in run, run
            assert run["activation_checkpointing"] is True and run["timed_steps"] == 2 and run["step_ms"] > 0
        for run in entry["runs"][1:]:
            assert run["slowdown_vs_non_private"] > 0
        trainable, total = entry["trainable_parameters"], entry["parameters"]
        assert (trainable < total) if mode == "lora" else (trainable == total)


def test_a_size_that_does_not_fit_stops_the_climb(tmp_path, monkeypatch):
    import benchmarks.dp_largest as bench

    def no_memory(*_args, **_kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bench, "_build", no_memory)
    out = tmp_path / "dp_largest.json"
    assert main(["--smoke", "--modes", "lora", "--out", str(out)]) == 1  # nothing fits: exit 1
    (entry,) = json.loads(out.read_text())["modes"]["lora"]["sizes"]
    assert (entry["error"], entry["oom"]) == ("out of memory while building the model", True)
