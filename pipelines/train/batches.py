"""Examples as tensors, and the forward pass and loss of each task (shared by training and evaluation)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelines.modeling import (
    FORECAST_SCALE, LoadedModel, causal_example_ids, forecast_inputs, pad_token_id, stop_token_ids, text_inputs,
)
from pipelines.train.data import check_labels, read_jsonl, with_weights
from pipelines.train.spec import TrainError, TrainSpec


def encode_examples(loaded: LoadedModel, examples: Sequence[Mapping[str, Any]], max_length: int):
    """Fixed-width tensors of all examples: ``(inputs..., targets, weights)`` as one TensorDataset."""
    import torch
    from torch.utils.data import TensorDataset

    weights = torch.tensor([float(e.get("weight", 1.0)) for e in examples], dtype=torch.float32)
    task = loaded.task
    if task == "classification":
        check_labels(examples, loaded.labels)
        index = {label: i for i, label in enumerate(loaded.labels)}
        enc = loaded.tokenizer(loaded.prepare_texts([str(e["text"]) for e in examples]), truncation=True,
                               max_length=max_length, padding="longest", return_tensors="pt")
        targets = torch.tensor([index[e["label"]] for e in examples])
        return TensorDataset(enc["input_ids"], enc["attention_mask"], targets, weights)
    if task == "causal_lm":
        tok = loaded.tokenizer
        stops, pad = stop_token_ids(loaded.model, tok), pad_token_id(loaded.model, tok)
        rows, labels = [], []
        for e in examples:
            # The chat template's turns for an imported model, ``<s> question \n answer </s>`` for a project-built one.
            prompt, answer = causal_example_ids(tok, str(e["question"]), str(e["answer"]), stops=stops)
            ids = (prompt + answer)[:max_length]
            # Loss on the answer (and its end token) only: the question is the user's, not what the model should say.
            rows.append(ids)
            labels.append(([-100] * len(prompt) + answer)[:max_length])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        target = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (r, lab) in enumerate(zip(rows, labels)):
            input_ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
            target[i, :len(lab)] = torch.tensor(lab)
        return TensorDataset(input_ids, mask, target, weights)
    x, last = forecast_inputs([e["window"] for e in examples])
    target = torch.tensor([float(e["target"]) for e in examples], dtype=torch.float32)
    return TensorDataset(x, last, target, weights)


def trim_batch(batch: Sequence[Any], task: str):
    """Cut a text batch to its longest sequence (datasets are padded to their longest example)."""
    if task == "forecast" or batch[0].shape[0] == 0:
        return batch
    width = max(1, int(batch[1].sum(dim=1).max()))
    return [batch[0][:, :width], batch[1][:, :width], batch[2][:, :width] if batch[2].ndim == 2 else batch[2],
            batch[3]]


def loss_module(task: str):
    """The task's loss per sample times its weight, reduced as ``reduction`` says (a torch module).

    Opacus' ghost clipping sets ``reduction = "none"`` around its call to get the per-sample vector;
    hooks mode sees the mean, the reduction Opacus is told, so per-sample gradients are unscaled.
    """
    import torch

    class _Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.task = task
            self.reduction = "mean"

        def forward(self, output, target, weights):
            if task == "classification":
                per_sample = torch.nn.functional.cross_entropy(output, target, reduction="none")
            elif task == "causal_lm":
                logits, labels = output[:, :-1], target[:, 1:]
                tokens = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                           ignore_index=-100, reduction="none").view(labels.shape)
                count = (labels != -100).sum(dim=1).clamp(min=1)
                per_sample = tokens.sum(dim=1) / count
            else:
                per_sample = torch.nn.functional.smooth_l1_loss(output, target, reduction="none")
            per_sample = per_sample * weights
            if self.reduction == "none":
                return per_sample
            if self.reduction == "sum":
                return per_sample.sum()
            return per_sample.mean() if per_sample.numel() else per_sample.sum()

    return _Loss()


def forward(model, batch, task: str):
    """``(output, target, weights)`` of a batch: logits or the forecaster's scaled change, and its target."""
    if task == "forecast":
        x, last, target, weights = batch
        return model(x), (target / last - 1.0) * FORECAST_SCALE, weights
    ids, mask, target, weights = batch
    return model(**text_inputs(ids, mask, task=task, model=model)).logits, target, weights


def resolve_device(name: str):
    import torch

    from pipelines.modeling import resolve_device as checked

    try:
        return torch.device(checked(name))
    except ValueError as exc:
        raise TrainError(f"training {exc}") from None


def lr_lambda(spec: TrainSpec, total_steps: int) -> Callable[[int], float]:
    floor = spec.min_learning_rate / spec.learning_rate if spec.learning_rate else 0.0

    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        if spec.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - spec.warmup_steps) / max(1, total_steps - spec.warmup_steps))
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if spec.schedule == "cosine" else 1.0 - progress
        return floor + (1.0 - floor) * shape

    return factor


def load_examples(spec: TrainSpec) -> tuple[list[dict], list[dict]]:
    train = [dict(e) for e in spec.train_examples] if spec.train_examples else read_jsonl(spec.train_path)
    held = [dict(e) for e in spec.eval_examples] if spec.eval_examples else (
        read_jsonl(spec.eval_path) if spec.eval_path else [])
    if not train:
        raise TrainError("no training examples: nothing to train on")
    if not held:
        raise TrainError("no eval examples: the best epoch and the gate need a held-out split "
                         "(raise training.eval_percent or add data)")
    if spec.weight_terms:
        train = with_weights(train, terms=spec.weight_terms, factor=spec.weight_factor)
    return train, held

