"""Batched inference on a loaded model: classification (label + probabilities) and greedy generation.

Inputs are prepared exactly as training prepared them (``pipelines.modeling``): classification texts
go through ``LoadedModel.prepare_texts`` (jieba for Chinese WordPiece models) and ``text_inputs``;
prompts become the chat template's user turn (imported models) or ``<s> prompt \\n`` (``causal_prompt_ids``), the
format the answers were trained after; generation stops at the model's ``generation_config`` end tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.serving.source import ServableModel


@dataclass(frozen=True)
class Served:
    """The model a domain serves right now; replaced as a whole (one reference assignment) on reload.

    ``engine``: the continuous-batching engine generating for it (``pipelines.serving.engine``), or None for
    today's batched ``generate``; it travels with the model, so a request sees one model and its engine.
    """

    domain: str
    version: str
    artifact_id: str
    promotion: int
    loaded: ServableModel
    engine: Any = None


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int


def classify(servable: ServableModel, texts: Sequence[str], *, max_length: int | None = None) -> list[Prediction]:
    """Softmax over the labels for each text (one tokenizer call and one forward pass for the whole batch)."""
    import torch

    from pipelines.modeling import text_inputs

    loaded = servable.loaded
    limit = min(max_length or servable.max_length, servable.max_length)
    encoded = loaded.tokenizer(loaded.prepare_texts(texts), padding=True, truncation=True, max_length=limit,
                               return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(**text_inputs(encoded["input_ids"], encoded["attention_mask"], task=loaded.task,
                                            model=loaded.model)).logits
        probs = torch.softmax(logits.float(), dim=-1)
    labels = loaded.labels or tuple(str(i) for i in range(probs.shape[1]))
    out = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(label=labels[best], score=round(row[best], 6),
                              scores={labels[i]: round(p, 6) for i, p in enumerate(row)}))
    return out


def generate(servable: ServableModel, prompts: Sequence[str], max_new_tokens: Sequence[int]) -> list[Generation]:
    """Greedy answers; one ``generate`` call for the batch, each cut to its own ``max_new_tokens``.

    Greedy decoding makes a row's first n tokens independent of how many more are generated, so one
    call with the batch's largest budget serves every request. Rows are left-padded; a prompt longer
    than the model's window keeps its last tokens (the end of a question is what the answer follows).
    """
    import torch

    from pipelines.modeling import causal_prompt_ids, stop_token_ids

    tokenizer = servable.tokenizer
    budget = max(max_new_tokens)
    keep = max(1, servable.max_length - budget)
    rows = [causal_prompt_ids(tokenizer, p)[-keep:] for p in prompts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    stops = stop_token_ids(servable.model, tokenizer)
    with torch.inference_mode():
        output = servable.model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=budget,
                                         do_sample=False, pad_token_id=pad, eos_token_id=stops)
    out = []
    for row, limit in zip(output[:, width:].tolist(), max_new_tokens):
        row = row[:limit]
        ends = [i for i, token in enumerate(row) if token in stops]
        if ends:
            row = row[:ends[0]]
        out.append(Generation(text=tokenizer.decode(row, skip_special_tokens=True).strip(), tokens=len(row)))
    return out
