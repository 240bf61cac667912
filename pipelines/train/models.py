"""Models trained under DP, built and loaded offline: one folder format for training and serving.

A model folder is what ``save_pretrained`` writes plus our own descriptor::

    model.safetensors        weights (untied: Opacus refuses tied embeddings)
    config.json              the transformers config (or, for ``forecast``, our own config)
    tokenizer.json, tokenizer_config.json, ...   the locally trained tokenizer (text tasks)
    pipeline_model.json      {"format", "task", "labels", "segment", "architecture", "size", ...}

Tasks:

- ``classification``: ``BertForSequenceClassification``, random init from a small config, WordPiece
  tokenizer trained on the domain's texts (Chinese texts are segmented with jieba first); or the
  English pretrained all-MiniLM-L6-v2 as the encoder (``base="minilm"``).
- ``causal_lm``: ``LlamaForCausalLM`` (``tie_word_embeddings=False``) with a byte-level BPE tokenizer,
  trained on ``question + "\\n" + answer`` sequences (loss on the answer tokens and the final EOS only).
- ``forecast``: LSTM (``opacus.layers.DPLSTM``) + attention pooling over a window of a numeric series,
  predicting the next value relative to the last one.

torch, transformers and tokenizers are imported inside functions: DAG files import ``pipelines`` at parse time.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "pipelines.train/1"
DESCRIPTOR = "pipeline_model.json"
TASKS = ("classification", "causal_lm", "forecast")
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
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# The forecaster predicts the next value's change relative to the last one in percent: targets of
# order 1 keep per-sample gradients near the clipping norm instead of far below it.
FORECAST_SCALE = 100.0


class ModelFolderError(ValueError):
    """A folder is not a model folder this code can load; the message says what is wrong."""


@dataclass
class LoadedModel:
    """A model ready for training or inference.

    Attributes:
        task: ``classification``, ``causal_lm`` or ``forecast``.
        model: the torch module (``eval()`` mode after loading).
        tokenizer: a ``PreTrainedTokenizerFast`` (text tasks) or None (forecast).
        labels: class names in logit order (classification), else ().
        config: the ``pipeline_model.json`` descriptor.
        folder: where it was loaded from.
    """

    task: str
    model: Any
    tokenizer: Any
    labels: tuple[str, ...]
    config: dict[str, Any]
    folder: Path | None = None
    _segment: bool = field(default=False, repr=False)

    def prepare_texts(self, texts: Sequence[str]) -> list[str]:
        """Texts as the tokenizer expects them (jieba-segmented for a Chinese WordPiece model)."""
        if self.config.get("segment") == "jieba":
            from pipelines.label.model import segment_chinese

            return [segment_chinese(t) for t in texts]
        return list(texts)

    def predict(self, texts: Sequence[str], *, max_length: int = 128) -> list[tuple[str, float]]:
        """Classification: the most probable label of each text and its softmax probability."""
        import torch

        if self.task != "classification":
            raise ValueError(f"predict() is for classification models; this one is {self.task}")
        if not texts:
            return []
        enc = self.tokenizer(self.prepare_texts(texts), padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**text_inputs(enc["input_ids"], enc["attention_mask"], task=self.task)).logits
        probs = torch.softmax(logits.float(), dim=-1)
        conf, best = probs.max(dim=-1)
        return [(self.labels[int(b)], float(c)) for b, c in zip(best, conf)]

    def generate(self, question: str, *, max_new_tokens: int = 64) -> str:
        """Causal LM: greedy answer to a question (the prompt format used in training)."""
        import torch

        if self.task != "causal_lm":
            raise ValueError(f"generate() is for causal_lm models; this one is {self.task}")
        ids = causal_prompt_ids(self.tokenizer, question)
        input_ids = torch.tensor([ids])
        eos = self.tokenizer.convert_tokens_to_ids(EOS)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                      pad_token_id=self.tokenizer.convert_tokens_to_ids(PAD))
        return self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()

    def forecast(self, windows: Sequence[Sequence[float]]) -> list[float]:
        """Forecast: the next value after each window."""
        import torch

        if self.task != "forecast":
            raise ValueError(f"forecast() is for forecast models; this one is {self.task}")
        x, last = forecast_inputs(windows)
        with torch.inference_mode():
            return (last * (1.0 + self.model(x) / FORECAST_SCALE)).tolist()


# ---------------------------------------------------------------------------------------------
# Inputs shared by training and serving


def text_inputs(input_ids, attention_mask, *, task: str) -> dict[str, Any]:
    """Model keyword arguments with explicit ``position_ids`` (and BERT ``token_type_ids``).

    Opacus computes per-sample gradients of every trainable layer; the default position/type ids
    are buffers without a batch dimension and its hooks fail on them ("stack expects each tensor
    to be equal size"), so they are passed with the batch dimension.
    """
    import torch

    batch, width = input_ids.shape
    position_ids = torch.arange(width, device=input_ids.device).expand(batch, width).contiguous()
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    if task == "classification":
        out["token_type_ids"] = torch.zeros_like(input_ids)
    return out


def causal_prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """``<s> question \\n``: the tokens the answer is conditioned on."""
    return [tokenizer.convert_tokens_to_ids(BOS)] + tokenizer(question + "\n", add_special_tokens=False)["input_ids"]


def forecast_inputs(windows: Sequence[Sequence[float]]):
    """``(x [B, T, 1], last [B])``: each window divided by its last value, minus one (scale-free returns)."""
    import torch

    values = torch.tensor([list(w) for w in windows], dtype=torch.float32)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError("forecast windows must be equal-length sequences of at least 2 values")
    last = values[:, -1]
    if bool((last == 0).any()):
        raise ValueError("forecast windows must not end in 0 (values are scaled by the last one)")
    return (values / last[:, None] - 1.0).unsqueeze(-1), last


# ---------------------------------------------------------------------------------------------
# Forecaster


def _forecast_module_class():
    import torch
    from opacus.layers import DPLSTM

    class Forecaster(torch.nn.Module):
        """DPLSTM over the window, additive attention over its states, a linear head: next relative change."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__()
            self.config = dict(config)
            hidden = config["hidden_size"]
            self.lstm = DPLSTM(1, hidden, batch_first=True)
            self.score = torch.nn.Linear(hidden, config["attention_size"])
            self.context = torch.nn.Linear(config["attention_size"], 1, bias=False)
            self.head = torch.nn.Linear(2 * hidden, 1)

        def forward(self, x):
            states, _ = self.lstm(x)
            weights = torch.softmax(self.context(torch.tanh(self.score(states))), dim=1)
            pooled = (weights * states).sum(dim=1)
            return self.head(torch.cat([pooled, states[:, -1]], dim=-1)).squeeze(-1)

        def save_pretrained(self, folder: str | Path) -> None:
            from safetensors.torch import save_file

            path = Path(folder)
            path.mkdir(parents=True, exist_ok=True)
            # DPLSTM registers each weight under two names; named_parameters() lists each tensor once.
            save_file({k: v.detach().contiguous().cpu() for k, v in self.named_parameters()},
                      str(path / "model.safetensors"))
            (path / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n",
                                              encoding="utf-8")

    return Forecaster


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


def quiet_transformers() -> None:
    """No progress bars from transformers (they flood the training log that operators read)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


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


def _write_descriptor(folder: Path, descriptor: dict[str, Any]) -> None:
    (folder / DESCRIPTOR).write_text(json.dumps({"format": FORMAT, **descriptor}, indent=2, ensure_ascii=False,
                                                sort_keys=True) + "\n", encoding="utf-8")


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
        model = _forecast_module_class()({"task": "forecast", **_LSTM[size]})
        tokenizer = None
        descriptor["architecture"] = "DPLSTM-attention"
        descriptor["series"] = len(items)
    model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    _write_descriptor(folder, descriptor)
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
        return model, tokenizer, {"architecture": "BertForSequenceClassification", "segment": None,
                                  "encoder": "sentence-transformers/all-MiniLM-L6-v2"}
    if base != "scratch":
        raise ValueError(f"base={base!r}: use 'scratch' or 'minilm'")
    from pipelines.label.model import segment_chinese, train_wordpiece

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


def read_descriptor(folder: str | Path) -> dict[str, Any]:
    """The ``pipeline_model.json`` of a model folder (ModelFolderError when absent or of another format)."""
    path = Path(folder) / DESCRIPTOR
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFolderError(f"{path} not found: not a model folder (build one with build_base_model)") from None
    if descriptor.get("format") != FORMAT or descriptor.get("task") not in TASKS:
        raise ModelFolderError(f"{path}: format {descriptor.get('format')!r} task {descriptor.get('task')!r}; "
                               f"this code reads {FORMAT!r} with task in {TASKS}")
    return descriptor


def load_model(folder: str | Path) -> LoadedModel:
    """Load a model folder written by :func:`build_base_model` or by training.

    Args:
        folder: the model folder.

    Returns:
        A LoadedModel in ``eval()`` mode on the CPU.
    """
    path = Path(folder)
    descriptor = read_descriptor(path)
    task = descriptor["task"]
    tokenizer = None
    if task == "forecast":
        from safetensors.torch import load_file

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        model = _forecast_module_class()(config)
        tensors = load_file(str(path / "model.safetensors"))
        missing = set(dict(model.named_parameters())) - set(tensors)
        if missing or set(tensors) - set(dict(model.named_parameters())):
            raise ModelFolderError(f"{path}/model.safetensors does not match the forecast config (missing "
                                   f"{sorted(missing)}, unexpected {sorted(set(tensors) - set(dict(model.named_parameters())))})")
        model.load_state_dict(tensors, strict=False)
    else:
        from transformers import AutoTokenizer, BertForSequenceClassification, LlamaForCausalLM

        quiet_transformers()
        cls = BertForSequenceClassification if task == "classification" else LlamaForCausalLM
        model = cls.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return LoadedModel(task=task, model=model.eval(), tokenizer=tokenizer, labels=tuple(descriptor.get("labels") or ()),
                       config=descriptor, folder=path)


def save_model(loaded: LoadedModel, model: Any, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a trained copy of ``loaded.model``) with ``loaded``'s tokenizer and descriptor to ``out_dir``.

    The folder is written beside ``out_dir`` and renamed into place, so a killed writer leaves no half folder.
    """
    final = Path(out_dir)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(str(tmp))
    descriptor = {k: v for k, v in loaded.config.items() if k != "format"}
    descriptor.update(extra or {})
    _write_descriptor(tmp, descriptor)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final
