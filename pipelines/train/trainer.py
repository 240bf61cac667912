"""DP training with Opacus: ``fit(spec) -> TrainResult``, resumable bit for bit after a kill.

One run: load the start model (:func:`pipelines.train.models.load_model`), optionally wrap it with LoRA,
make it private (``PrivacyEngine.make_private`` with the noise multiplier the privacy stage calibrated,
or ``make_private_with_epsilon`` when only a target epsilon is given), train with Poisson sampling and a
cosine (or linear) decay to ``min_learning_rate``, evaluate and checkpoint every epoch, keep the best
epoch by the task's metric and write it to ``out_dir`` as a model folder plus ``history.json``.

``grad_sample_mode="bk"`` swaps only the clipping: :class:`pipelines.train.fastclip.BookKeepingClipper`
(one forward, one backward) clips and noises instead of Opacus' ``DPOptimizer``, while the rest is what
hooks mode does: the same ``DPDataLoader`` over the same seeded generator (identical batches), the same
noise generator, optimizer and schedule, and the same Opacus accountant, stepped with
``(noise_multiplier, sample_rate)`` once per step exactly as Opacus' optimizer hook does, so the
reported epsilon is the one hooks mode reports for the same steps.

The per-sample weighted loss stays DP-correct: every sample's loss is multiplied by its weight
*before* Opacus computes and clips per-sample gradients, and the batch loss is their mean (the
reduction Opacus is told), so a weight changes a sample's direction and pre-clip size, never the
bound ``max_grad_norm`` on its contribution.

Resume: ``checkpoint_dir/last.pt`` holds the model, optimizer, scheduler, accountant history, every
RNG state (Python, numpy, torch CPU/CUDA, the Poisson sampler's generator, the noise generator, which
book-keeping clipping draws from too), the epoch/step counters, the best epoch and the history. ``fit``
with the same spec continues from it and ends with the same weights as an uninterrupted run
(``secure_mode`` excepted: its CSPRNG has no state).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipelines.train.data import DataError, check_labels, read_jsonl, with_weights
from pipelines.train.models import FORECAST_SCALE, LoadedModel, forecast_inputs, load_model, save_model, text_inputs

CHECKPOINT = "last.pt"
BEST = "best.pt"
HISTORY = "history.json"
METRICS = {"classification": ("macro_f1", True), "causal_lm": ("perplexity", False), "forecast": ("mae", False)}
GRAD_SAMPLE_MODES = ("hooks", "ghost", "bk")
_LORA_TARGETS = {"classification": ["query", "value"], "causal_lm": ["q_proj", "v_proj"]}
METHODS = ("full", "lora", "head", "head_bias", "last_layer")


class TrainError(ValueError):
    """The training spec or its inputs cannot be used; the message says what to do."""


@dataclass(frozen=True)
class TrainSpec:
    """Everything one DP training run needs (JSON round trip: :meth:`to_dict` / :meth:`from_dict`).

    Attributes:
        model_dir: start weights (a model folder: a base model or the production model).
        out_dir: where the best model folder and ``history.json`` are written.
        checkpoint_dir: per-epoch checkpoints; a run resumes from the one it finds there.
        train_examples / eval_examples: examples (see :mod:`pipelines.train.data`), or
        train_path / eval_path: JSONL files of examples (what the entry point reads).
        epochs: passes over the data (an epoch is ``1 / sample_rate`` Poisson-sampled steps).
        batch_size: expected batch size; ``sample_rate = 1 / ceil(n_train / batch_size)``.
        learning_rate: peak AdamW learning rate.
        min_learning_rate: the learning rate the schedule decays to at the last step.
        schedule: ``cosine``, ``linear`` or ``constant``.
        warmup_steps: linear warm-up steps before the decay.
        weight_decay: AdamW weight decay.
        max_length: tokens per example (text tasks; longer ones are truncated).
        noise_multiplier: sigma, calibrated by the privacy stage before training; or None with
        target_epsilon: Opacus calibrates sigma for (target_epsilon, delta) over ``epochs``.
        delta: the DP delta.
        max_grad_norm: per-sample clipping norm C.
        poisson_sampling: Poisson sampling (what the accountant assumes); off only for experiments.
        secure_mode: ``PrivacyEngine(secure_mode=...)``: CSPRNG noise and sampling (needs torchcsprng).
        grad_sample_mode: ``hooks`` (Opacus per-sample gradients), ``ghost`` (Opacus ghost clipping) or
            ``bk`` (book-keeping clipping, :mod:`pipelines.train.fastclip`: one backward pass; not with
            ``secure_mode``).
        accountant: ``rdp``, ``prv`` or ``gdp`` (must match the privacy stage's).
        method: ``full`` (every weight), ``lora`` (peft adapters + the classifier head; merged on save),
            ``head`` (classifier and pooler only: the encoder runs without autograd), ``head_bias`` (``head`` plus
            every bias and LayerNorm outside the embeddings) or ``last_layer`` (``head_bias`` plus the last encoder
            layer); embeddings stay frozen in all three; see :mod:`pipelines.train.recipes`.
        lora_r / lora_alpha: LoRA rank and scaling.
        seed: seeds weights init of adapters, dropout, Poisson sampling and noise.
        device: ``cpu``, ``cuda`` or ``auto``.
        weight_terms / weight_factor: examples whose text contains a term get loss weight ``weight_factor``
            (examples may also carry their own ``weight``).
        eval_batch_size: examples per forward pass when evaluating.
        num_threads: torch CPU threads (None: leave torch's default).
        log_every: log a progress line every this many steps.
    """

    model_dir: str
    out_dir: str
    checkpoint_dir: str
    train_examples: tuple[Mapping[str, Any], ...] = ()
    eval_examples: tuple[Mapping[str, Any], ...] = ()
    train_path: str | None = None
    eval_path: str | None = None
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_learning_rate: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_length: int = 128
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    poisson_sampling: bool = True
    secure_mode: bool = False
    grad_sample_mode: str = "hooks"
    accountant: str = "rdp"
    method: str = "full"
    lora_r: int = 8
    lora_alpha: int = 16
    seed: int = 0
    device: str = "auto"
    weight_terms: tuple[str, ...] = ()
    weight_factor: float = 1.5
    eval_batch_size: int = 64
    num_threads: int | None = None
    log_every: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_examples", tuple(self.train_examples))
        object.__setattr__(self, "eval_examples", tuple(self.eval_examples))
        object.__setattr__(self, "weight_terms", tuple(self.weight_terms))
        for name in ("model_dir", "out_dir", "checkpoint_dir"):
            if not getattr(self, name):
                raise TrainError(f"{name} is empty: give a folder")
        if bool(self.train_examples) == bool(self.train_path):
            raise TrainError("give the training examples either inline (train_examples) or as train_path, not both "
                             "or neither")
        if self.eval_examples and self.eval_path:
            raise TrainError("give the eval examples either inline (eval_examples) or as eval_path, not both")
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size", "log_every", "lora_r", "lora_alpha"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name}={getattr(self, name)}: use a positive integer")
        if self.warmup_steps < 0:
            raise TrainError(f"warmup_steps={self.warmup_steps}: use >= 0")
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise TrainError(f"need 0 <= min_learning_rate ({self.min_learning_rate}) <= learning_rate "
                             f"({self.learning_rate})")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise TrainError(f"schedule={self.schedule!r}: use cosine, linear or constant")
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise TrainError("give exactly one of noise_multiplier (calibrated by the privacy stage) or target_epsilon")
        if self.noise_multiplier is not None and self.noise_multiplier < 0:
            raise TrainError(f"noise_multiplier={self.noise_multiplier}: use >= 0")
        if self.target_epsilon is not None and self.target_epsilon <= 0:
            raise TrainError(f"target_epsilon={self.target_epsilon}: use > 0")
        if not 0 < self.delta < 1:
            raise TrainError(f"delta={self.delta}: use 0 < delta < 1 (typically below 1/n_train)")
        if self.max_grad_norm <= 0:
            raise TrainError(f"max_grad_norm={self.max_grad_norm}: use > 0")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise TrainError(f"grad_sample_mode={self.grad_sample_mode!r}: use hooks, ghost or bk")
        if self.grad_sample_mode == "bk" and self.secure_mode:
            raise TrainError("secure_mode draws noise with Opacus' CSPRNG, which grad_sample_mode=bk does not use: "
                             "use grad_sample_mode hooks or ghost with secure_mode, or secure_mode false")
        if self.accountant not in ("rdp", "prv", "gdp"):
            raise TrainError(f"accountant={self.accountant!r}: use rdp, prv or gdp")
        if self.method not in METHODS:
            raise TrainError(f"method={self.method!r}: use one of {METHODS}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise TrainError(f"device={self.device!r}: use cpu, cuda or auto")
        if self.weight_factor <= 0:
            raise TrainError(f"weight_factor={self.weight_factor}: use > 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise TrainError(f"num_threads={self.num_threads}: use >= 1 or null")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        out = asdict(self)
        out["train_examples"] = [dict(e) for e in self.train_examples]
        out["eval_examples"] = [dict(e) for e in self.eval_examples]
        out["weight_terms"] = list(self.weight_terms)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainSpec:
        """Build a spec from JSON values (TrainError naming unknown keys)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TrainError(f"unknown spec key(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise TrainError(f"spec: {exc}") from None


@dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes:
        out_dir: the best model folder (``load_model`` reads it) with ``history.json``.
        metrics: the best epoch's eval metrics (``metric`` names the one that chose it).
        history: one entry per epoch (loss, learning rate, epsilon so far, eval metrics).
        steps: optimizer steps taken (all epochs).
        sample_rate: Poisson sampling rate q.
        noise_multiplier: sigma used.
        epsilon: spent over all steps, from the engine's accountant, at ``delta``.
        delta: the DP delta.
        best_epoch: the epoch whose weights are in ``out_dir``.
        accountant: the accountant's name.
        max_grad_norm: per-sample clipping norm.
    """

    out_dir: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    steps: int
    sample_rate: float
    noise_multiplier: float
    epsilon: float
    delta: float
    best_epoch: int
    accountant: str
    max_grad_norm: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Batches


def _encode(loaded: LoadedModel, examples: Sequence[Mapping[str, Any]], max_length: int):
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
        from pipelines.train.models import EOS, PAD, causal_prompt_ids

        tok = loaded.tokenizer
        eos, pad = tok.convert_tokens_to_ids(EOS), tok.convert_tokens_to_ids(PAD)
        rows, labels = [], []
        for e in examples:
            prompt = causal_prompt_ids(tok, str(e["question"]))
            answer = tok(str(e["answer"]), add_special_tokens=False)["input_ids"] + [eos]
            ids = (prompt + answer)[:max_length]
            # Loss on the answer (and its EOS) only: the question is the user's, not what the model should say.
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


def _trim(batch: Sequence[Any], task: str):
    """Cut a text batch to its longest sequence (datasets are padded to their longest example)."""
    if task == "forecast" or batch[0].shape[0] == 0:
        return batch
    width = max(1, int(batch[1].sum(dim=1).max()))
    return [batch[0][:, :width], batch[1][:, :width], batch[2][:, :width] if batch[2].ndim == 2 else batch[2],
            batch[3]]


def _loss_module(task: str):
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


def _forward(model, batch, task: str):
    """``(output, target, weights)`` of a batch: logits or the forecaster's scaled change, and its target."""
    if task == "forecast":
        x, last, target, weights = batch
        return model(x), (target / last - 1.0) * FORECAST_SCALE, weights
    ids, mask, target, weights = batch
    return model(**text_inputs(ids, mask, task=task)).logits, target, weights


# ---------------------------------------------------------------------------------------------
# Session: the prepared model/optimizer/loader of one run


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("device=cuda but no CUDA device is visible: use device=cpu or auto")
    return torch.device(name)


def _lr_lambda(spec: TrainSpec, total_steps: int) -> Callable[[int], float]:
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


@dataclass
class Session:
    """A model made private and ready to train: what :func:`fit` drives, exposed for tests and tools.

    Attributes:
        spec: the run's spec.
        loaded: the start model as loaded (its tokenizer and descriptor are saved with the result).
        model: the Opacus-wrapped module (the plain module in bk mode).
        optimizer: the DPOptimizer (the plain optimizer in bk mode: the clipper privatises its gradients).
        criterion: the loss (Opacus' wrapper in ghost mode).
        loader: the (Poisson) training data loader.
        scheduler: learning-rate schedule over all epochs.
        engine: the PrivacyEngine (its accountant holds the spend so far; in bk mode the trainer steps it).
        sample_rate / noise_multiplier / steps_per_epoch: as used.
        sampler_generator / noise_generator: the seeded generators whose states checkpoints keep.
        clipper: the BookKeepingClipper in bk mode (it draws its noise from ``noise_generator``), else None.
    """

    spec: TrainSpec
    loaded: LoadedModel
    model: Any
    optimizer: Any
    criterion: Any
    loader: Any
    scheduler: Any
    engine: Any
    sample_rate: float
    noise_multiplier: float
    steps_per_epoch: int
    sampler_generator: Any
    noise_generator: Any
    device: Any
    train_set: Any
    eval_set: Any
    clipper: Any = None
    step: int = 0
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self):
        """The trained module without Opacus' wrapper (a peft model with LoRA)."""
        return getattr(self.model, "_module", self.model)

    def batch(self, examples: Sequence[Mapping[str, Any]]):
        """Examples encoded as one batch, the way the loader yields them."""
        data = _encode(self.loaded, examples, self.spec.max_length)
        return _trim(list(data.tensors), self.loaded.task)

    def _to_device(self, batch):
        return [t.to(self.device) for t in batch]

    def train_step(self, batch) -> float:
        """One DP step (per-sample clip, noise, optimizer, schedule) on a batch; returns the batch loss."""
        batch = self._to_device(_trim(self._nonempty(batch), self.loaded.task))
        self.model.train()
        if batch[0].shape[0] == 0:
            return self._empty_step()
        output, target, weights = _forward(self.model, batch, self.loaded.task)
        loss = self.criterion(output, target, weights)
        if self.clipper is not None:
            self.clipper.backward(loss)
            self._release_bk()
        else:
            _backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.item()) if batch[0].shape[0] else 0.0

    def _release_bk(self) -> None:
        """Noise the clipped sum into ``p.grad`` and count the release, in the order of Opacus'
        ``DPOptimizer.pre_step`` (clip, noise, scale, then its accountant hook)."""
        self.clipper.finalize_gradients()
        self.engine.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def clipped_gradient_sum(self, batch):
        """The batch's summed per-sample-clipped gradients plus noise, flattened (the optimizer is not stepped).

        This is the real step's forward, loss, backward, clipping and noising (``DPOptimizer.pre_step``, or the
        book-keeping clipper in bk mode), stopped before the update: with ``noise_multiplier=0`` each sample adds
        at most ``max_grad_norm``. Like ``pre_step`` it counts one release in the accountant.
        """
        import torch

        batch = self._to_device(_trim(list(batch), self.loaded.task))
        self.model.train()
        output, target, weights = _forward(self.model, batch, self.loaded.task)
        loss = self.criterion(output, target, weights)
        if self.clipper is not None:
            self.clipper.backward(loss)
            self._release_bk()
            expected = self.clipper.expected_batch_size
        else:
            _backward(loss)
            self.optimizer.pre_step()
            expected = self.optimizer.expected_batch_size
        grads = [p.grad.detach().flatten() * expected for p in self.module.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        return torch.cat(grads)

    def _empty_step(self) -> float:
        """An empty Poisson batch still takes a step: zero clipped sum plus noise (the mechanism the
        accountant counts). Attention layers cannot run on a zero-size batch, so no forward pass is made."""
        import torch

        if self.clipper is not None:
            self.clipper.discard()
            self._release_bk()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            return 0.0
        for p in self.module.parameters():
            if p.requires_grad:
                if self.spec.grad_sample_mode == "ghost":
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return 0.0

    def _nonempty(self, batch):
        # Opacus turns an empty Poisson batch into zero-size tensors shaped like the first batch, or
        # into [] when the first batch of this process was empty (a resumed run): rebuild it here.
        if isinstance(batch, (list, tuple)) and len(batch) == len(self.train_set.tensors):
            return list(batch)
        return [t[:0] for t in self.train_set.tensors]

    def evaluate(self) -> dict[str, Any]:
        """The task's metrics on the eval examples."""
        return _evaluate(self)

    def epsilon(self) -> float:
        """Privacy spent so far at ``spec.delta`` (0 before the first step)."""
        return float(self.engine.get_epsilon(self.spec.delta)) if self.step else 0.0


def _backward(loss) -> None:
    with warnings.catch_warnings():
        # The first layer's inputs (token ids) need no gradient, so torch warns on every backward hook call.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss.backward()


def _load_examples(spec: TrainSpec) -> tuple[list[dict], list[dict]]:
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


def prepare(spec: TrainSpec, *, log: Callable[[str], None] | None = None) -> Session:
    """Load the start model and data and make them private; no step is taken.

    Args:
        spec: the run's spec.
        log: progress lines go here (default: stderr).

    Returns:
        The session :func:`fit` trains.
    """
    import numpy as np
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    train, held = _load_examples(spec)
    loaded = load_model(spec.model_dir)
    if loaded.task not in METRICS:
        raise TrainError(f"{spec.model_dir}: task {loaded.task!r} cannot be trained here")
    try:
        train_set = _encode(loaded, train, spec.max_length)
        eval_set = _encode(loaded, held, spec.max_length)
    except (KeyError, TypeError) as exc:
        raise DataError(f"examples do not fit task {loaded.task!r} (missing or bad field {exc}); "
                        "see pipelines.train.data for each task's fields") from None
    random.seed(spec.seed)
    np.random.seed(spec.seed % 2 ** 32)
    torch.manual_seed(spec.seed)
    device = _device(spec.device)
    model = loaded.model
    if spec.method == "lora":
        model = _with_lora(model, loaded.task, spec)
    elif spec.method in ("head", "head_bias", "last_layer"):
        model = _with_head(model, loaded.task, spec.method)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    sampler_generator = torch.Generator().manual_seed(spec.seed)
    noise_generator = torch.Generator(device=device).manual_seed(spec.seed + 1)
    loader = DataLoader(train_set, batch_size=min(spec.batch_size, len(train_set)), shuffle=True,
                        generator=sampler_generator)
    if spec.grad_sample_mode == "bk":
        private = _make_private_bk(spec, model=model, optimizer=optimizer, criterion=_loss_module(loaded.task),
                                   loader=loader, noise_generator=noise_generator)
        return _session(spec, loaded, private, sampler_generator=sampler_generator, noise_generator=noise_generator,
                        device=device, train_set=train_set, eval_set=eval_set, n_eval=len(held), log=log)
    kwargs = dict(module=model, optimizer=optimizer, criterion=_loss_module(loaded.task), data_loader=loader,
                  max_grad_norm=spec.max_grad_norm, poisson_sampling=spec.poisson_sampling,
                  grad_sample_mode=spec.grad_sample_mode, loss_reduction="mean",
                  noise_generator=None if spec.secure_mode else noise_generator)
    with warnings.catch_warnings():
        # Opacus warns about secure_mode=False (the spec says it) and about the functorch fallback on every run.
        warnings.simplefilter("ignore")
        try:
            engine = PrivacyEngine(accountant=spec.accountant, secure_mode=spec.secure_mode)
        except ImportError as exc:
            raise TrainError(f"secure_mode needs torchcsprng ({exc}); install it on the training host or set "
                             "secure_mode false for experiments") from None
        if spec.noise_multiplier is not None:
            made = engine.make_private(noise_multiplier=spec.noise_multiplier, **kwargs)
        else:
            made = engine.make_private_with_epsilon(target_epsilon=spec.target_epsilon, target_delta=spec.delta,
                                                    epochs=spec.epochs, **kwargs)
    if spec.grad_sample_mode == "ghost":
        dp_model, dp_optimizer, criterion, dp_loader = made
    else:
        dp_model, dp_optimizer, dp_loader = made
        criterion = kwargs["criterion"]
    private = _Private(model=dp_model, optimizer=dp_optimizer, scheduled=dp_optimizer.original_optimizer,
                       criterion=criterion, loader=dp_loader, engine=engine, sample_rate=1.0 / len(loader),
                       noise_multiplier=float(dp_optimizer.noise_multiplier))
    return _session(spec, loaded, private, sampler_generator=sampler_generator, noise_generator=noise_generator,
                    device=device, train_set=train_set, eval_set=eval_set, n_eval=len(held), log=log)


@dataclass(frozen=True)
class _Private:
    """What making a run private produced (Opacus' ``make_private`` or :func:`_make_private_bk`)."""

    model: Any
    optimizer: Any
    scheduled: Any  # the torch optimizer the LR schedule drives
    criterion: Any
    loader: Any
    engine: Any
    sample_rate: float
    noise_multiplier: float
    clipper: Any = None


def _session(spec: TrainSpec, loaded: LoadedModel, private: _Private, *, sampler_generator, noise_generator, device,
             train_set, eval_set, n_eval: int, log: Callable[[str], None] | None) -> Session:
    import torch

    steps_per_epoch = len(private.loader)
    total = spec.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(private.scheduled, _lr_lambda(spec, total))
    session = Session(spec=spec, loaded=loaded, model=private.model, optimizer=private.optimizer,
                      criterion=private.criterion, loader=private.loader, scheduler=scheduler, engine=private.engine,
                      sample_rate=private.sample_rate, noise_multiplier=private.noise_multiplier,
                      steps_per_epoch=steps_per_epoch, sampler_generator=sampler_generator,
                      noise_generator=noise_generator, device=device, train_set=train_set, eval_set=eval_set,
                      clipper=private.clipper)
    (log or _stderr)(f"[train] task={loaded.task} n_train={len(train_set)} n_eval={n_eval} "
                     f"q={session.sample_rate:.5f} sigma={session.noise_multiplier:.4f} C={spec.max_grad_norm} "
                     f"steps/epoch={steps_per_epoch} epochs={spec.epochs} mode={spec.grad_sample_mode} "
                     f"method={spec.method} device={device}")
    return session


def _make_private_bk(spec: TrainSpec, *, model, optimizer, criterion, loader, noise_generator) -> _Private:
    """Book-keeping clipping with everything else as ``PrivacyEngine.make_private`` sets it up.

    The sample rate, expected batch size, Poisson loader and (for ``target_epsilon``) the calibrated
    noise multiplier are computed exactly as Opacus 1.6 computes them, so a bk run samples the same
    batches and spends the same epsilon as a hooks run of the same spec.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import DPDataLoader

    from pipelines.train.fastclip import BookKeepingClipper, UnsupportedLayerError

    sample_rate = 1.0 / len(loader)
    expected_batch_size = int(len(loader.dataset) * sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the secure_mode=False warning: bk rejects secure_mode in the spec
        engine = PrivacyEngine(accountant=spec.accountant, secure_mode=False)
    if spec.noise_multiplier is not None:
        noise_multiplier = float(spec.noise_multiplier)
    else:
        noise_multiplier = float(get_noise_multiplier(target_epsilon=spec.target_epsilon, target_delta=spec.delta,
                                                      sample_rate=sample_rate, epochs=spec.epochs,
                                                      accountant=engine.accountant.mechanism()))
    # Opacus' make_private passes generator=None (no secure_mode), so the Poisson sampler draws from the
    # original loader's generator: the same seeded sampler_generator as hooks mode.
    dp_loader = DPDataLoader.from_data_loader(loader, distributed=False) if spec.poisson_sampling else loader
    try:
        clipper = BookKeepingClipper(model, max_grad_norm=spec.max_grad_norm, noise_multiplier=noise_multiplier,
                                     expected_batch_size=expected_batch_size, loss_reduction="mean",
                                     generator=noise_generator)
    except UnsupportedLayerError as exc:
        raise TrainError(f"grad_sample_mode=bk cannot train this model: {exc}; or use grad_sample_mode hooks") from None
    return _Private(model=model, optimizer=optimizer, scheduled=optimizer, criterion=criterion, loader=dp_loader,
                    engine=engine, sample_rate=sample_rate, noise_multiplier=noise_multiplier, clipper=clipper)


def _with_lora(model, task: str, spec: TrainSpec):
    if task not in _LORA_TARGETS:
        raise TrainError(f"method=lora is for text models; task {task!r} trains fully (method=full)")
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                                                  target_modules=_LORA_TARGETS[task], bias="none"))
    if task == "classification":
        # The head is new for the label set: it trains in full (peft's modules_to_save would wrap it in a
        # module Opacus does not know).
        for name, param in peft_model.named_parameters():
            if ".classifier." in name:
                param.requires_grad = True
    return peft_model


def _with_head(model, task: str, method: str):
    """Freeze all but the classifier and pooler (``head``), plus biases and LayerNorms (``head_bias``), plus the
    last encoder layer (``last_layer``): few trainable coordinates mean little noise per useful one under DP,
    and frozen embeddings keep the pretrained vocabulary features intact."""
    if task != "classification":
        raise TrainError(f"method={method} is for classification encoders; task {task!r}: use full or lora")
    layers = [name for name, _ in model.named_modules() if name.count(".") == 3 and ".encoder.layer." in name]
    last = f"{layers[-1]}." if method == "last_layer" and layers else None
    for name, param in model.named_parameters():
        trainable = name.startswith(("classifier.", "bert.pooler."))
        if method != "head":
            trainable = trainable or name.endswith(".bias") or ".LayerNorm." in name
        param.requires_grad = (trainable or (last is not None and name.startswith(last))) and ".embeddings." not in name
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation


def _evaluate(session: Session) -> dict[str, Any]:
    import torch

    from pipelines.label.model import score

    task, module = session.loaded.task, session.module
    tensors = session.eval_set.tensors
    n = tensors[0].shape[0]
    module.eval()
    predicted: list[int] = []
    loss_sum = correct = count = 0.0
    abs_err = naive_err = 0.0
    with torch.no_grad():
        for start in range(0, n, session.spec.eval_batch_size):
            batch = _trim([t[start:start + session.spec.eval_batch_size] for t in tensors], task)
            batch = [t.to(session.device) for t in batch]
            output, target, _weights = _forward(module, batch, task)
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
    from types import SimpleNamespace

    from pipelines.train.models import load_model

    if not examples:
        raise TrainError("no examples to evaluate on")
    loaded = load_model(folder)
    target = _device(device)
    module = loaded.model.to(target)
    session = SimpleNamespace(loaded=loaded, module=module, eval_set=_encode(loaded, examples, max_length),
                              spec=SimpleNamespace(eval_batch_size=batch_size), device=target)
    return _evaluate(session)


def _better(metric: str, higher: bool, value: float, best: Mapping[str, Any]) -> bool:
    if not best:
        return True
    return value > best["value"] if higher else value < best["value"]


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state(session: Session) -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                       float(np_state[4])],
             "sampler": session.sampler_generator.get_state(), "noise": session.noise_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(session: Session, state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    session.sampler_generator.set_state(state["sampler"])
    session.noise_generator.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def spec_fingerprint(spec: TrainSpec) -> str:
    """A digest of what determines a run's trajectory (not where it writes): a checkpoint resumes only the same run."""
    values = spec.to_dict()
    for key in ("out_dir", "checkpoint_dir", "log_every", "num_threads", "train_path", "eval_path"):
        values.pop(key)
    values["train_examples"], values["eval_examples"] = _load_examples(spec)
    values["model"] = _folder_digest(Path(spec.model_dir))
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _save_checkpoint(session: Session, folder: Path, fingerprint: str) -> None:
    _atomic_save({"fingerprint": fingerprint, "epoch": session.epoch, "step": session.step,
                  "model": session.module.state_dict(), "optimizer": session.optimizer.state_dict(),
                  "scheduler": session.scheduler.state_dict(), "accountant": session.engine.accountant.state_dict(),
                  "rng": _rng_state(session), "history": json.dumps(session.history),
                  "best": json.dumps(session.best)}, folder / CHECKPOINT)


def _resume(session: Session, folder: Path, fingerprint: str, log: Callable[[str], None]) -> bool:
    import torch

    path = folder / CHECKPOINT
    if not path.is_file():
        return False
    state = torch.load(path, map_location=session.device, weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise TrainError(f"{path} was written by a different run (spec, data or start model differ): "
                         "delete the checkpoint folder or use another checkpoint_dir")
    session.module.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    session.engine.accountant.load_state_dict(state["accountant"])
    session.epoch, session.step = int(state["epoch"]), int(state["step"])
    session.history = json.loads(state["history"])
    session.best = json.loads(state["best"])
    _set_rng_state(session, {k: v.cpu() if hasattr(v, "cpu") and k != "cuda" else v for k, v in state["rng"].items()})
    log(f"[train] resumed from {path}: epoch={session.epoch} step={session.step}")
    return True


# ---------------------------------------------------------------------------------------------
# fit


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fit(spec: TrainSpec, *, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train under DP, evaluating and checkpointing every epoch; resume from ``checkpoint_dir`` if it holds one.

    Args:
        spec: the run's spec.
        log: progress lines (step, epoch, loss, epsilon so far) go here; default stderr.

    Returns:
        The TrainResult; ``out_dir`` holds the best epoch's model folder and ``history.json``.

    Raises:
        TrainError / DataError: the spec, the data or the start model cannot be used (the message says why).
    """
    import torch

    log = log or _stderr
    checkpoints = Path(spec.checkpoint_dir)
    checkpoints.mkdir(parents=True, exist_ok=True)
    session = prepare(spec, log=log)
    fingerprint = spec_fingerprint(spec)
    _resume(session, checkpoints, fingerprint, log)
    metric, higher = METRICS[session.loaded.task]
    started = time.perf_counter()
    while session.epoch < spec.epochs:
        epoch = session.epoch + 1
        losses = []
        for batch in session.loader:
            loss = session.train_step(batch)
            losses.append(loss)
            if session.step % spec.log_every == 0:
                log(f"[train] epoch={epoch} step={session.step} loss={loss:.4f} "
                    f"lr={session.scheduler.get_last_lr()[0]:.3g} eps={session.epsilon():.4f}")
        metrics = session.evaluate()
        session.epoch = epoch
        entry = {"epoch": epoch, "step": session.step, "train_loss": round(sum(losses) / max(1, len(losses)), 6),
                 "lr": session.scheduler.get_last_lr()[0], "epsilon": round(session.epsilon(), 6), **metrics}
        session.history.append(entry)
        if _better(metric, higher, metrics[metric], session.best):
            session.best = {"epoch": epoch, "metric": metric, "value": metrics[metric], "metrics": metrics}
            _atomic_save(session.module.state_dict(), checkpoints / BEST)
        # Checkpoint after eval so the saved RNG states are the ones the next epoch starts from.
        _save_checkpoint(session, checkpoints, fingerprint)
        log(f"[train] epoch={epoch} done step={session.step} {metric}={metrics[metric]} eps={entry['epsilon']:.4f} "
            f"best_epoch={session.best['epoch']} checkpoint={checkpoints / CHECKPOINT}")
    if session.clipper is not None:
        session.clipper.remove()  # its hooks stay on the module otherwise, and the output is saved from it
    session.module.load_state_dict(torch.load(checkpoints / BEST, map_location=session.device, weights_only=True))
    result = TrainResult(out_dir=str(spec.out_dir), metrics={**session.best["metrics"], "metric": metric},
                         history=session.history, steps=session.step, sample_rate=session.sample_rate,
                         noise_multiplier=session.noise_multiplier, epsilon=session.epsilon(), delta=spec.delta,
                         best_epoch=int(session.best["epoch"]), accountant=spec.accountant,
                         max_grad_norm=spec.max_grad_norm)
    _write_output(session, result)
    log(f"[train] done steps={result.steps} eps={result.epsilon:.4f} best_epoch={result.best_epoch} "
        f"{metric}={result.metrics[metric]} out={spec.out_dir} ({time.perf_counter() - started:.1f}s this process)")
    return result


def _write_output(session: Session, result: TrainResult) -> None:
    module = session.module
    if session.spec.method == "lora":
        # Serving loads plain model folders: fold the adapters into the weights.
        module = module.merge_and_unload()
    module = module.to("cpu")
    out = Path(session.spec.out_dir)
    save_model(session.loaded, module, out, extra={"trained": {
        "best_epoch": result.best_epoch, "steps": result.steps, "method": session.spec.method,
        "dp": {"epsilon": result.epsilon, "delta": result.delta, "noise_multiplier": result.noise_multiplier,
               "sample_rate": result.sample_rate, "steps": result.steps, "accountant": result.accountant,
               "max_grad_norm": result.max_grad_norm}}})
    (out / HISTORY).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def clear_checkpoints(spec: TrainSpec) -> None:
    """Delete a run's checkpoints (after its output is uploaded), so a rerun starts over."""
    shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
