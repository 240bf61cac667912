"""The sandbox (time, memory, no network) and the code evaluation (syntax-valid rates, pass@1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipelines.code.evaluate import evaluate_code_model, load_tasks, task_passes
from pipelines.code.sandbox import network_namespace_prefix, run_sandboxed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))  # serving_helpers.py


def test_a_test_that_connects_fails() -> None:
    for program in ('import socket\nsocket.create_connection(("1.1.1.1", 80), timeout=2)\n',
                    'import socket\ns = socket.socket()\ns.connect(("127.0.0.1", 9))\n'):
        result = run_sandboxed(program, timeout_s=10)
        assert (result.passed, result.reason) == (False, "failed") and "OSError" in result.stderr
    if network_namespace_prefix():
        # Below the Python-level block, the namespace itself has no route: the raw C socket cannot connect either.
        raw = run_sandboxed('import _socket\ns = _socket.socket()\ns.settimeout(2)\ns.connect(("1.1.1.1", 80))\n')
        assert raw.isolated_network and not raw.passed and "Network is unreachable" in raw.stderr


def test_time_memory_and_failures_are_contained() -> None:
    assert run_sandboxed("while True:\n    pass\n", timeout_s=1).reason == "timeout"
    assert run_sandboxed("x = bytearray(2 * 10**9)\n", memory_mb=256).reason == "killed"
    assert run_sandboxed("assert 1 == 2\n").reason == "failed"
    ok = run_sandboxed("import os\nprint(sorted(os.environ))\n")
    assert ok.passed and ok.stdout.strip() in ("['PATH', 'PYTHONHASHSEED']", "['LC_CTYPE', 'PATH', 'PYTHONHASHSEED']")


def test_bundled_tasks_pass_with_their_solutions_and_fail_without() -> None:
    tasks = load_tasks()
    assert len(tasks) == 8
    assert [t.id for t in tasks if task_passes(t, t.solution)] == [t.id for t in tasks]
    assert [t.id for t in tasks if task_passes(t, "    return None\n")] == []


@pytest.mark.slow
def test_evaluation_of_a_tiny_model(tmp_path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from serving_helpers import causal_folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    folder = causal_folder(tmp_path / "m", seed=5)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = evaluate_code_model(model, AutoTokenizer.from_pretrained(folder), tasks=load_tasks()[:4], max_new_tokens=24)
    assert (out.tasks, out.gating) == (4, False)
    # Every constrained completion parses (or is counted as not finished); unconstrained noise does not.
    assert out.syntax_valid_constrained == round(1 - out.not_finished / 4, 4)
    assert out.syntax_valid_unconstrained <= out.syntax_valid_constrained
    assert 0.0 <= out.pass_at_1 <= out.syntax_valid_constrained
