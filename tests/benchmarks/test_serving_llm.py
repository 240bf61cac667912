"""``benchmarks/serving_llm.py --quick`` runs on CPU and writes the results JSON the H200 run writes."""

from __future__ import annotations

import json

import pytest

from benchmarks.serving_llm import main

pytestmark = pytest.mark.slow


def test_quick_run_compares_both_engines(tmp_path):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "serving_llm.json"
    assert main(["--quick", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    runs = results["runs"]
    assert [r["engine"] for r in runs] == ["hf_generate", "continuous_batching"]
    for run in runs:
        # Every answer is exactly new_tokens long (EOS ignored): tokens/s is requests/s times 8.
        assert (run["requests"], run["prompt_tokens"], run["new_tokens"], run["clients"]) == (12, 16, 8, 4)
        assert run["tok_s"] == pytest.approx(run["req_s"] * 8, rel=0.01)
        assert run["p95_ms"] >= run["p50_ms"] > 0
    assert results["speedup_req_s"] == pytest.approx(runs[1]["req_s"] / runs[0]["req_s"], rel=0.01)


def test_repeated_rounds_report_each_engines_median(tmp_path):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "serving_llm.json"
    assert main(["--quick", "--repeat", "3", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    rounds = results["rounds"]
    assert [[r["engine"] for r in one] for one in rounds] == [["hf_generate", "continuous_batching"]] * 3
    for i, run in enumerate(results["runs"]):
        assert run["rounds"] == 3
        assert run["req_s"] == sorted(one[i]["req_s"] for one in rounds)[1]
        assert run["p95_ms"] == sorted(one[i]["p95_ms"] for one in rounds)[1]
    ratios = sorted(one[1]["req_s"] / one[0]["req_s"] for one in rounds)
    assert results["round_speedups_req_s"] == pytest.approx(ratios, abs=1e-3)
