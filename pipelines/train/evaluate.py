"""The task metrics of a model on held-out examples: every epoch in training, and the gate's baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


def is_better(metric: str, higher: bool, value: float, best: Mapping[str, Any]) -> bool:
    if not best:
        return True
    return value > best["value"] if higher else value < best["value"]
