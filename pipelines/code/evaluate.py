"""Evaluation of a code model: syntax-valid rate with and without constraints, and pass@1 on the bundled
function tasks (``tasks/functions.jsonl``: a signature and docstring, the unit tests, a reference solution),
each completion run with its tests in the sandbox (``pipelines.code.sandbox``).

These numbers are *reported* (``metrics.code`` in the manifest), never gating: the gate compares perplexity
with the unigram baseline, like every causal-LM domain; a model built offline cannot be expected to solve tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.code.constrained import GrammarCache, complete, parses
from pipelines.code.sandbox import run_sandboxed

TASKS_PATH = Path(__file__).resolve().parent / "tasks" / "functions.jsonl"


@dataclass(frozen=True)
class FunctionTask:
    id: str
    prompt: str
    test: str
    solution: str


@dataclass(frozen=True)
class CodeEvaluation:
    """What ``evaluate_code_model`` measured (``gating`` is always False: reported only)."""

    tasks: int
    syntax_valid_constrained: float
    syntax_valid_unconstrained: float
    pass_at_1: float
    passed: tuple[str, ...]
    not_finished: int
    tokens_per_s_constrained: float
    tokens_per_s_unconstrained: float
    max_new_tokens: int
    gating: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = list(self.passed)
        return out


def load_tasks(path: Path = TASKS_PATH) -> list[FunctionTask]:
    return [FunctionTask(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def task_passes(task: FunctionTask, completion: str, *, timeout_s: float = 10.0) -> bool:
    """Whether ``task.prompt + completion`` passes the task's tests in the sandbox."""
    return run_sandboxed(f"{task.prompt}{completion}\n\n{task.test}", timeout_s=timeout_s).passed


def evaluate_code_model(model: Any, tokenizer: Any, *, tasks: Sequence[FunctionTask] | None = None,
                        max_new_tokens: int = 48, max_retries: int = 3) -> CodeEvaluation:
    """Complete every task's prompt with and without the Python grammar; run the constrained ones' tests.

    Prompts are given in the model's serving format (``causal_prompt_ids``), as ``/v1/code/complete`` does.
    """
    from pipelines.modeling import causal_prompt_ids, stop_token_ids

    tasks = list(tasks or load_tasks())
    stops = stop_token_ids(model, tokenizer)
    cache = GrammarCache(tokenizer, vocab_size=model.get_output_embeddings().weight.shape[0], stop_ids=stops)
    valid = {"python": 0, "none": 0}
    tokens = {"python": 0, "none": 0}
    seconds = {"python": 0.0, "none": 0.0}
    passed, not_finished = [], 0
    for task in tasks:
        ids = causal_prompt_ids(tokenizer, task.prompt)
        for grammar in ("none", "python"):
            started = time.perf_counter()
            out = complete(model, tokenizer, task.prompt, grammar=grammar, max_new_tokens=max_new_tokens,
                           max_retries=max_retries, cache=cache, prompt_ids=ids, stop_ids=stops)
            seconds[grammar] += time.perf_counter() - started
            tokens[grammar] += out.tokens
            valid[grammar] += parses(task.prompt, out.text, "python")
            if grammar == "python":
                not_finished += not out.finished
                if out.finished and task_passes(task, out.text):
                    passed.append(task.id)
    n = max(1, len(tasks))
    return CodeEvaluation(
        tasks=len(tasks), syntax_valid_constrained=round(valid["python"] / n, 4),
        syntax_valid_unconstrained=round(valid["none"] / n, 4), pass_at_1=round(len(passed) / n, 4),
        passed=tuple(passed), not_finished=not_finished,
        tokens_per_s_constrained=round(tokens["python"] / max(seconds["python"], 1e-9), 1),
        tokens_per_s_unconstrained=round(tokens["none"] / max(seconds["none"], 1e-9), 1), max_new_tokens=max_new_tokens)


def code_metrics(config: Any, slot: str, folder: str | Path, *, device: str = "cpu") -> dict[str, Any]:
    """``{"code": <CodeEvaluation>}`` for a code domain's trained model folder, ``{}`` for any other slot."""
    from pipelines.code.config import code_settings

    if slot not in config.domains or code_settings(config, slot) is None:
        return {}
    from pipelines.modeling import load_model

    loaded = load_model(folder)  # the project's loader: merged or adapter folders alike
    model = loaded.model.to("cpu" if device == "auto" else device).eval()
    settings = code_settings(config, slot)
    return {"code": evaluate_code_model(model, loaded.tokenizer, max_retries=settings.max_retries).to_dict()}
