"""The task metrics of a model on an evaluation set: every epoch in training, production's numbers for the gate,
and the trivial baseline a candidate must beat.

The evaluation set is public (or consented) data configured per model slot (``artifacts.evaluation``), never the
private records a run trains on: these numbers are published without noise (manifest, card, history) and choose
the best epoch, so computing them on private records would release them outside the DP guarantee.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipelines.artifacts.baseline import last_value_baseline, majority_baseline, unigram_baseline
from pipelines.label.model import score
from pipelines.modeling import FORECAST_SCALE, load_model
from pipelines.train.batches import encode_examples, forward, resolve_device, trim_batch
from pipelines.train.spec import TrainError


def evaluate_session(session: Any) -> dict[str, Any]:
    """Metrics of ``session.module`` on ``session.eval_set`` (a :class:`pipelines.train.session.Session`, or the
    same attributes for a saved model: :func:`evaluate_model`)."""
    import torch

    task, module = session.loaded.task, session.module
    tensors = session.eval_set.tensors
    n = tensors[0].shape[0]
    module.eval()
    predicted: list[int] = []
    loss_sum = correct = count = 0.0
    abs_err = naive_err = 0.0
    with torch.no_grad():
        for start in range(0, n, session.spec.eval_batch_size):
            batch = trim_batch([t[start:start + session.spec.eval_batch_size] for t in tensors], task)
            batch = [t.to(session.device) for t in batch]
            output, target, _weights = forward(module, batch, task)
            if task == "classification":
                predicted.extend(output.argmax(dim=-1).tolist())
            elif task == "causal_lm":
                logits, labels = output[:, :-1].float(), target[:, 1:]
                keep = labels != -100
                loss_sum += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
                correct += float((logits.argmax(dim=-1)[keep] == labels[keep]).sum())
                count += float(keep.sum())
            else:
                _x, last, value, _w = batch
                forecast = last * (1.0 + output / FORECAST_SCALE)
                abs_err += float((forecast - value).abs().sum())
                naive_err += float((last - value).abs().sum())
    module.train()
    if task == "classification":
        labels = session.loaded.labels
        truth = [labels[i] for i in tensors[2].tolist()]
        return dict(score(truth, [labels[i] for i in predicted]))
    if task == "causal_lm":
        mean = loss_sum / max(count, 1.0)
        return {"perplexity": round(math.exp(min(mean, 50.0)), 4), "token_accuracy": round(correct / max(count, 1.0), 4),
                "loss": round(mean, 6), "tokens": int(count), "n": n}
    mae, naive = abs_err / n, naive_err / n
    return {"mae": round(mae, 6), "naive_mae": round(naive, 6), "mae_vs_naive": round(mae / naive, 4) if naive else None,
            "n": n}


def evaluate_model(folder: str | Path, examples: Sequence[Mapping[str, Any]], *, max_length: int,
                   batch_size: int = 64, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a saved model folder on examples with the metrics training reports (the gate's baseline).

    Args:
        folder: a model folder (``load_model`` reads it), e.g. the production artifact.
        examples: held-out examples of the model's task.
        max_length: tokens per example (as in training).
        batch_size: examples per forward pass.
        device: ``cpu``, ``cuda`` or ``auto``.
    """
    if not examples:
        raise TrainError("no examples to evaluate on")
    loaded = load_model(folder)
    target = resolve_device(device)
    module = loaded.model.to(target)
    session = SimpleNamespace(loaded=loaded, module=module, eval_set=encode_examples(loaded, examples, max_length),
                              spec=SimpleNamespace(eval_batch_size=batch_size), device=target)
    return evaluate_session(session)


def evaluation_digest(examples: Sequence[Mapping[str, Any]]) -> str:
    """``sha256:<16 hex>`` of an evaluation set (its examples as canonical JSON): the ``split`` that the candidate,
    production's baseline and the trivial baseline must share for the gate to compare them."""
    text = "\n".join(json.dumps(dict(e), sort_keys=True, ensure_ascii=False) for e in examples)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def trivial_baseline(folder: str | Path, examples: Sequence[Mapping[str, Any]], *, max_length: int) -> dict[str, Any]:
    """What a model that learned nothing scores on ``examples`` (the gate's ``metrics["trivial"]``).

    Classification: the majority label of the set (accuracy); causal LM: an add-one unigram model of the answer
    tokens as the model's tokenizer encodes them (perplexity); forecast: each window's last value (MAE). Computed
    from the evaluation examples alone (:mod:`pipelines.artifacts.baseline`).

    Args:
        folder: a model folder of the task (its tokenizer encodes the causal LM's answers).
        examples: the evaluation examples.
        max_length: tokens per example (as in training: the same truncation).
    """
    if not examples:
        raise TrainError("no examples to compute the trivial baseline on")
    loaded = load_model(folder)
    if loaded.task == "classification":
        out = majority_baseline([str(e["label"]) for e in examples])
    elif loaded.task == "causal_lm":
        targets = encode_examples(loaded, examples, max_length).tensors[2]
        answers = [[int(t) for t in row.tolist() if t != -100] for row in targets]
        out = unigram_baseline(answers, vocab_size=len(loaded.tokenizer))
    else:
        out = last_value_baseline([e["window"] for e in examples], [e["target"] for e in examples])
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


def is_better(metric: str, higher: bool, value: float, best: Mapping[str, Any]) -> bool:
    if not best:
        return True
    return value > best["value"] if higher else value < best["value"]
