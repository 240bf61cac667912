"""A small causal LM pretrained (non-privately) on public dialogues: the offline default base for ``causal_lm``.

A randomly initialised LM fine-tuned under DP on a few hundred records learns nothing a reader can see:
its first generated token is the end of sequence, so ``/generate`` answers with empty text. This module
gives the DP fine-tune a start that already speaks: a byte-level BPE tokenizer and a ``LlamaForCausalLM``
(:func:`pipelines.train.models.build_base_model`) trained for a few epochs on question/answer pairs of
chatterbot-corpus (every consecutive pair of turns, English and Chinese), with the loss on the answers only,
the prompt format serving uses. Pairs equal (normalised) to one of the domain's records are dropped first,
so the base never saw a record it is tuned or evaluated on. The descriptor records the corpus (package,
version, files, sha256, counts) and the recipe under ``"pretraining"``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.modeling import load_model, save_model
from pipelines.pretrain.corpora import Corpus, _corpus, normalize, package_dir

RECIPE = "causal-lm-answers/1"


@dataclass(frozen=True)
class Dialogues:
    """Question/answer pairs of one public corpus and where they come from."""

    corpus: Corpus
    pairs: tuple[tuple[str, str], ...]

    def provenance(self) -> dict[str, Any]:
        out = self.corpus.provenance()
        out["n_pairs"] = len(self.pairs)
        return out


def public_dialogues(*, languages: Sequence[str] = ("english", "chinese"),
                     exclude_texts: Iterable[str] = ()) -> Dialogues:
    """Every consecutive pair of turns in chatterbot-corpus' conversations of ``languages`` (files in name order),
    without a pair whose ``question\\nanswer`` equals (normalised) one of ``exclude_texts`` (the domain's records)."""
    import yaml

    banned = {normalize(t) for t in exclude_texts}
    root = package_dir("chatterbot-corpus", "chatterbot_corpus")
    files, pairs, seen = [], [], set()
    for language in languages:
        paths = sorted((root / "data" / language).glob("*.yml"))
        files += [str(p.relative_to(root)) for p in paths]
        for path in paths:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for turns in document.get("conversations") or []:
                turns = [t.strip() for t in turns if isinstance(t, str) and t.strip()]
                for question, answer in zip(turns, turns[1:]):
                    key = normalize(f"{question}\n{answer}")
                    if key in seen or key in banned:
                        continue
                    seen.add(key)
                    pairs.append((question, answer))
    if not pairs:
        raise ValueError("no public dialogue left to pretrain on (every pair was excluded)")
    corpus = _corpus("chatterbot_dialogues", "chatterbot-corpus", "chatterbot_corpus", files,
                     [f"{q}\n{a}" for q, a in pairs])
    return Dialogues(corpus=corpus, pairs=tuple(pairs))


def pretrain_causal_lm(*, dialogues: Dialogues, out_dir: str | Path, size: str = "small", seed: int = 0,
                       max_length: int = 64, epochs: int = 8, batch_size: int = 32, learning_rate: float = 2e-3,
                       log: Callable[[str], None] | None = None) -> Path:
    """Build a causal LM (tokenizer + Llama) from ``dialogues`` and pretrain it on their answers; write the folder.

    Args:
        dialogues: the public pairs (:func:`public_dialogues`).
        out_dir: the model folder to write (new or empty).
        size: ``tiny`` (tests) or ``small`` (see :mod:`pipelines.train.models`).
        seed: seeds the weights and the batch order: the same inputs give the same model.
        max_length: tokens per sequence (position embeddings and truncation).
        epochs / batch_size / learning_rate: AdamW with a linear warm-up over the first 10 % of the steps and
            a cosine decay; no clipping, no noise (public text needs no privacy).
        log: progress lines (default: none).

    Returns:
        The folder; its descriptor carries ``pretraining`` (corpus provenance, recipe, steps, final loss).
    """
    import torch
    from torch.utils.data import DataLoader

    from pipelines.train.batches import encode_examples, forward, loss_module, trim_batch
    from pipelines.train.models import build_base_model

    say = log or (lambda _line: None)
    folder = Path(out_dir)
    texts = [f"{q}\n{a}" for q, a in dialogues.pairs]
    scratch = folder.with_name(folder.name + ".init")
    shutil.rmtree(scratch, ignore_errors=True)  # a killed earlier build's leftovers
    build_base_model(task="causal_lm", texts_or_series=texts, out_dir=scratch, size=size, seed=seed,
                     max_length=max_length)
    loaded = load_model(scratch)
    examples = [{"question": q, "answer": a} for q, a in dialogues.pairs]
    data = encode_examples(loaded, examples, max_length)
    model = loaded.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    total = epochs * len(loader)
    warmup = max(1, total // 10)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    criterion = loss_module("causal_lm")
    loss_value = float("nan")
    for epoch in range(epochs):
        losses = []
        for batch in loader:
            output, target, weights = forward(model, trim_batch(batch, "causal_lm"), "causal_lm")
            loss = criterion(output, target, weights)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        loss_value = sum(losses) / len(losses)
        say(f"[pretrain] causal LM epoch {epoch + 1}/{epochs}: answer loss {loss_value:.3f}")
    model.eval()
    pretraining = {"recipe": RECIPE, "private_data": False, "corpora": [dialogues.provenance()],
                   "tokenizer": "byte-level BPE from the corpus above",
                   "epochs": epochs, "steps": total, "batch_size": batch_size, "learning_rate": learning_rate,
                   "final_answer_loss": round(loss_value, 4),
                   "text_sha256": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()}
    save_model(loaded, model, folder, extra={"base": "public-pretrained", "pretraining": pretraining})
    shutil.rmtree(scratch, ignore_errors=True)
    say(f"[pretrain] wrote {folder} ({len(examples)} public pairs, {total} steps)")
    return folder
