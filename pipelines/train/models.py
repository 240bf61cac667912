"""Models trained under DP, built offline: base models, tokenizers, sample series.

A model folder is what ``save_pretrained`` writes plus our own descriptor::

    model.safetensors        weights (untied: Opacus refuses tied embeddings)
    config.json              the transformers config (or, for ``forecast``, our own config)
    tokenizer.json, tokenizer_config.json, ...   the locally trained tokenizer (text tasks)
    pipeline_model.json      {"format", "task", "labels", "segment", "architecture", "size", ...}

Tasks:

- ``classification``: ``BertForSequenceClassification``, random init from a small config, WordPiece
  tokenizer trained on the domain's texts (Chinese texts are segmented with jieba first); or the
  English pretrained all-MiniLM-L6-v2 as the encoder (``base="minilm"``; its folder says ``"pooling": "mean"``:
  the classifier reads the mean of the token states, the model's sentence embedding, not the [CLS] pooler).
- ``causal_lm``: ``LlamaForCausalLM`` (``tie_word_embeddings=False``) with a byte-level BPE tokenizer,
  trained on ``question + "\\n" + answer`` sequences (loss on the answer tokens and the final EOS only).
- ``forecast``: LSTM (``opacus.layers.DPLSTM``) + attention pooling over a window of a numeric series,
  predicting the next value relative to the last one.

The folder format and the loader (``load_model``, ``save_model``, ``LoadedModel``) live in :mod:`pipelines.modeling`,
which serving imports without this module.

torch, transformers and tokenizers are imported inside functions: DAG files import ``pipelines`` at parse time.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.modeling import (
    BOS, EOS, PAD, TASKS, forecaster_class, quiet_transformers, segment_chinese, write_descriptor,
)

SIZES = ("tiny", "small")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# Model shapes per size: tiny is for tests and smoke runs (seconds on a CPU), small for real weekly runs.
_BERT = {"tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab=2000),
         "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                       vocab=16000)}
_LLAMA = {"tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       intermediate_size=64, vocab=1000),
          "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                        intermediate_size=688, vocab=8000)}
_LSTM = {"tiny": dict(hidden_size=16, attention_size=16), "small": dict(hidden_size=64, attention_size=32)}


def make_sample_series(seed: int, n: int, *, length: int = 160) -> list[list[float]]:
    """``n`` deterministic price-like series: trend + weekly/monthly seasonality + noise, always positive.

    Series ``i`` depends only on ``(seed, i)``, so growing ``n`` keeps the earlier series.
    """
    if n < 1 or length < 8:
        raise ValueError("make_sample_series needs n >= 1 and length >= 8")
    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        level = rng.uniform(20.0, 200.0)
        trend = rng.uniform(-0.002, 0.004)
        amp7, amp30 = rng.uniform(0.0, 0.04), rng.uniform(0.0, 0.06)
        phase7, phase30 = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
        noise = rng.uniform(0.002, 0.01)
        series = []
        for t in range(length):
            season = amp7 * math.sin(2 * math.pi * t / 7 + phase7) + amp30 * math.sin(2 * math.pi * t / 30 + phase30)
            value = level * math.exp(trend * t) * (1.0 + season) * (1.0 + rng.gauss(0.0, noise))
            series.append(round(value, 4))
        out.append(series)
    return out


def series_windows(series: Sequence[Sequence[float]], *, window: int, eval_tail: int) -> tuple[list[dict], list[dict]]:
    """Sliding windows ``{"window": [...], "target": next}``; targets in each series' last ``eval_tail`` points are
    held out (a time split: the model never trains on the future it is scored on)."""
    train, held = [], []
    for s_index, values in enumerate(series):
        cut = len(values) - eval_tail
        for end in range(window, len(values)):
            example = {"id": f"s{s_index}t{end}", "window": list(values[end - window:end]), "target": values[end]}
            (held if end >= cut else train).append(example)
    return train, held


# ---------------------------------------------------------------------------------------------
# Tokenizers



def _wrap_tokenizer(tokenizer: Any, **special: str):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def train_bpe(texts: Sequence[str], *, vocab_size: int):
    """A byte-level BPE tokenizer (``tokenizers``) with ``<s> </s> <pad>`` specials, trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer


# ---------------------------------------------------------------------------------------------
# Build and load


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)



def build_base_model(
    *,
    task: str,
    texts_or_series: Sequence[Any],
    out_dir: str | Path,
    labels: Sequence[str] = (),
    size: str = "tiny",
    seed: int = 0,
    base: str = "scratch",
    max_length: int = 128,
    dropout: float = 0.1,
) -> Path:
    """Build a randomly initialised (or MiniLM-based) model with a locally trained tokenizer and save it.

    Args:
        task: ``classification``, ``causal_lm`` or ``forecast``.
        texts_or_series: texts the tokenizer is trained on (causal_lm: ``question\\nanswer`` texts);
            for ``forecast`` the series (only their count is recorded; the model has no vocabulary).
        out_dir: the folder to write (created; must be empty or absent).
        labels: class names, in logit order (classification; at least two).
        size: ``tiny`` (tests, smoke runs) or ``small``.
        seed: seeds the initial weights.
        base: ``scratch`` or ``minilm`` (classification only: the English all-MiniLM-L6-v2 encoder and its
            tokenizer with a new classification head).
        max_length: the longest sequence the model accepts (position embeddings).
        dropout: hidden and attention dropout of a BERT built from scratch (0 makes a forward pass
            independent of the random state: the clipping tests use it).

    Returns:
        The folder, loadable with :func:`load_model`.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}: use one of {TASKS}")
    if size not in SIZES:
        raise ValueError(f"size={size!r}: use one of {SIZES}")
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: build a base model into a new folder")
    items = list(texts_or_series)
    if not items:
        raise ValueError("texts_or_series is empty: a tokenizer (or the sample count) needs data")
    folder.mkdir(parents=True, exist_ok=True)
    quiet_transformers()
    _seed_all(seed)
    descriptor: dict[str, Any] = {"task": task, "size": size, "seed": seed, "base": base, "labels": [],
                                  "max_length": max_length, "segment": None}
    if task == "classification":
        labels = [str(x) for x in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"classification needs at least two distinct labels, got {labels}")
        descriptor["labels"] = labels
        model, tokenizer, extra = _build_classifier(items, labels, size=size, base=base, max_length=max_length,
                                                     dropout=dropout)
        descriptor.update(extra)
    elif task == "causal_lm":
        if base != "scratch":
            raise ValueError("causal_lm models are built from scratch (no pretrained LM exists offline)")
        from transformers import LlamaConfig, LlamaForCausalLM

        shape = dict(_LLAMA[size])
        tok = train_bpe(items, vocab_size=shape.pop("vocab"))
        tokenizer = _wrap_tokenizer(tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
        config = LlamaConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=max_length,
                             tie_word_embeddings=False, bos_token_id=tok.token_to_id(BOS),
                             eos_token_id=tok.token_to_id(EOS), pad_token_id=tok.token_to_id(PAD), **shape)
        model = LlamaForCausalLM(config)
        descriptor["architecture"] = "LlamaForCausalLM"
    else:
        if base != "scratch":
            raise ValueError("forecast models are built from scratch")
        model = forecaster_class()({"task": "forecast", **_LSTM[size]})
        tokenizer = None
        descriptor["architecture"] = "DPLSTM-attention"
        descriptor["series"] = len(items)
    model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    write_descriptor(folder, descriptor)
    return folder


def _build_classifier(texts: list[str], labels: list[str], *, size: str, base: str, max_length: int,
                      dropout: float):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    if base == "minilm":
        from pipelines.label.model import encoder_path

        path = encoder_path()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = BertForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, num_labels=len(labels), id2label=id2label, label2id=label2id)
        # Its sentence embedding is the mean of the token states (sentence-transformers), not the [CLS] pooler.
        return model, tokenizer, {"architecture": "BertForSequenceClassification", "segment": None,
                                  "encoder": "sentence-transformers/all-MiniLM-L6-v2", "pooling": "mean"}
    if base != "scratch":
        raise ValueError(f"base={base!r}: use 'scratch' or 'minilm'")
    from pipelines.label.chinese import train_wordpiece

    chinese = sum(bool(_CJK.search(t)) for t in texts) * 2 > len(texts)
    prepared = [segment_chinese(t) for t in texts] if chinese else texts
    shape = dict(_BERT[size])
    tok = train_wordpiece(prepared, vocab_size=shape.pop("vocab"), min_frequency=2)
    tokenizer = _wrap_tokenizer(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]")
    config = BertConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=max_length, type_vocab_size=1,
                        num_labels=len(labels), id2label=id2label, label2id=label2id,
                        pad_token_id=tok.token_to_id("[PAD]"), tie_word_embeddings=False,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **shape)
    return BertForSequenceClassification(config), tokenizer, {"architecture": "BertForSequenceClassification",
                                                               "segment": "jieba" if chinese else None}


