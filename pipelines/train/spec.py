"""The spec of one DP training run (``TrainSpec``), what it produced (``TrainResult``), and the trainer's error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from pipelines.config.training import METHODS, SHARDINGS

CHECKPOINT = "last.pt"
BEST = "best.pt"
HISTORY = "history.json"
METRICS = {"classification": ("macro_f1", True), "causal_lm": ("perplexity", False), "forecast": ("mae", False)}
GRAD_SAMPLE_MODES = ("hooks", "ghost", "bk")
_LORA_TARGETS = {"classification": ["query", "value"], "causal_lm": ["q_proj", "v_proj"]}


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
        sharding: ``none`` or ``fsdp``: how the ranks of a torchrun job hold the model (a full copy each with
            Opacus DPDDP, or FSDP2 shards with Opacus' ``ghost_fsdp`` clipping; fsdp needs ``grad_sample_mode``
            ghost and more than one process).
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
    sharding: str = "none"
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
        if self.sharding not in SHARDINGS:
            raise TrainError(f"sharding={self.sharding!r}: use one of {SHARDINGS}")
        if self.sharding == "fsdp" and self.grad_sample_mode != "ghost":
            raise TrainError(f"sharding=fsdp clips with Opacus' ghost clipping for FSDP: set grad_sample_mode ghost "
                             f"(not {self.grad_sample_mode}), or sharding none")
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
        world_size: processes that trained it (torchrun ranks; 1 for one process).
        samples_per_s: examples per second, all ranks together, over the epochs this attempt trained (0 when
            it only resumed a finished run); the one figure that is not the same from attempt to attempt.
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
    world_size: int = 1
    samples_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainResult:
        """The result a run wrote (``history.json`` in its ``out_dir``); TrainError naming unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TrainError(f"unknown result key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

