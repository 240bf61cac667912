"""The ``training`` section: how a domain's models are trained (``domains.<d>.training`` overrides keys)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.config.base import PROJECT_ROOT, ConfigError

# Which parameters a fine-tune trains (pipelines.train.spec.TrainSpec.method).
METHODS = ("full", "lora", "head", "head_bias", "last_layer")
BASES = ("scratch", "minilm", "public-pretrained")
# How a torchrun job holds the model (pipelines.train.session): every rank a full copy (Opacus DPDDP), or FSDP2 shards.
SHARDINGS = ("none", "fsdp")


@dataclass(frozen=True)
class TrainingConfig:
    """How a domain's models are trained (the DP budget itself is the privacy stage's).

    Attributes:
        epochs / monthly_epochs: passes over the data of a weekly fine-tune / a monthly full retrain.
        batch_size: expected (Poisson) batch size.
        learning_rate / min_learning_rate: weekly peak rate and the rate the schedule decays to.
        monthly_learning_rate / monthly_min_learning_rate: the same for the monthly retrain (decays to 1e-6).
        schedule: ``cosine``, ``linear`` or ``constant``; warmup_steps before it, or warmup_fraction of the
            run's steps (when > 0; what the recipes use: the step count depends on the data).
        weight_decay: AdamW weight decay.
        max_length: tokens per example.
        max_grad_norm: per-sample clipping norm C.
        grad_sample_mode: ``hooks``, ``ghost`` (ghost clipping: less memory on large batches) or ``bk``
            (book-keeping clipping, pipelines.train.fastclip: one backward pass, the fastest; not with secure_mode).
        method: ``full``, ``lora``, ``head``, ``head_bias`` or ``last_layer`` (pipelines.train.recipes says which
            suits which base under DP); lora_r / lora_alpha: adapter rank and scaling.
        eval_percent: share of records (by content hash) held out for evaluation and the gate.
        size: base model size built for a domain (``tiny`` or ``small``); base: ``scratch`` (random init; causal
            LMs are then pretrained non-privately on public text), ``minilm`` (all-MiniLM-L6-v2, English) or
            ``public-pretrained`` (pipelines.pretrain: an encoder built from public Chinese text only).
        min_n_epsilon: the smallest ``train examples x epsilon`` at which the recipe's benchmark left the
            baseline; a plan below it carries a warning (0 = no check).
        seed: seeds init, sampling and noise.
        device: ``cpu``, ``cuda`` or ``auto``.
        secure_mode: Opacus CSPRNG for noise and sampling (needs torchcsprng on the training host).
        weight_terms_file: lexicon whose terms weigh an example's loss by ``weight_factor`` ("" = none;
            relative paths are from the project root).
        num_threads: torch CPU threads (0 = torch's default).
        devices: processes (GPUs on a GPU worker) one run trains on: 1 trains in the task's process, N > 1
            launches a torchrun job of N ranks (Opacus DPDDP, :func:`pipelines.finetune.run.launch_training`);
            the train task takes this many slots of the ``gpu`` pool, which counts GPUs.
        sharding: how the ranks of a torchrun job hold the model: ``none`` (every rank a full copy, Opacus DPDDP) or
            ``fsdp`` (FSDP2: parameters, gradients and optimizer states sharded over the ranks, gathered layer by
            layer, for a model that does not fit one GPU; Opacus ghost clipping, so grad_sample_mode ghost, and
            devices >= 2).
        forecast: the domain also trains a time-series forecaster, the model slot ``<domain>_forecast``
            (pipelines.forecast); forecast_series / forecast_length: series published per curated interval
            and points per series; forecast_window: points the model reads; forecast_eval_tail: last
            points of each series held out for evaluation and the gate.
    """

    epochs: int = 3
    monthly_epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 5e-4
    min_learning_rate: float = 0.0
    monthly_learning_rate: float = 1e-3
    monthly_min_learning_rate: float = 1e-6
    schedule: str = "cosine"
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    weight_decay: float = 0.0
    max_length: int = 128
    max_grad_norm: float = 1.0
    grad_sample_mode: str = "hooks"
    method: str = "full"
    lora_r: int = 8
    lora_alpha: int = 16
    eval_percent: int = 10
    size: str = "small"
    base: str = "scratch"
    seed: int = 0
    min_n_epsilon: float = 0.0
    device: str = "auto"
    secure_mode: bool = False
    weight_terms_file: str = ""
    weight_factor: float = 1.5
    num_threads: int = 0
    devices: int = 1
    # Orchestration (pipelines.finetune): where runs checkpoint on the training host, the gate's metric
    # ("" = the task's: accuracy for classification, perplexity for causal_lm), the labels a base model
    # knows beyond the public sample's.
    checkpoint_root: str = ".local/checkpoints"
    gate_metric: str = ""
    max_drop: float | None = None
    labels: tuple[str, ...] = ()
    sharding: str = "none"
    # The domain's forecaster slot (pipelines.forecast); off unless a domain sets forecast: true.
    forecast: bool = False
    forecast_series: int = 48
    forecast_length: int = 120
    forecast_window: int = 32
    forecast_eval_tail: int = 16

    def __post_init__(self) -> None:
        for name in ("epochs", "monthly_epochs", "batch_size", "max_length", "lora_r", "lora_alpha"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"training.{name}={getattr(self, name)}: use a positive integer")
        for low, high in (("min_learning_rate", "learning_rate"), ("monthly_min_learning_rate", "monthly_learning_rate")):
            if not 0 <= getattr(self, low) <= getattr(self, high):
                raise ConfigError(f"training: need 0 <= {low} <= {high}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ConfigError(f"training.schedule={self.schedule!r}: use cosine, linear or constant")
        if self.grad_sample_mode not in ("hooks", "ghost", "bk"):
            raise ConfigError(f"training.grad_sample_mode={self.grad_sample_mode!r}: use hooks, ghost or bk")
        if self.grad_sample_mode == "bk" and self.secure_mode:
            raise ConfigError("training.grad_sample_mode=bk does not use Opacus' CSPRNG noise: with secure_mode true "
                              "use grad_sample_mode hooks or ghost")
        if self.method not in METHODS:
            raise ConfigError(f"training.method={self.method!r}: use one of {', '.join(METHODS)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"training.warmup_fraction={self.warmup_fraction}: use 0 <= f < 1")
        if self.min_n_epsilon < 0:
            raise ConfigError(f"training.min_n_epsilon={self.min_n_epsilon}: use >= 0")
        if not 1 <= self.eval_percent <= 50:
            raise ConfigError(f"training.eval_percent={self.eval_percent}: use 1..50")
        if self.size not in ("tiny", "small"):
            raise ConfigError(f"training.size={self.size!r}: use tiny or small")
        if self.base not in BASES:
            raise ConfigError(f"training.base={self.base!r}: use one of {', '.join(BASES)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"training.device={self.device!r}: use cpu, cuda or auto")
        if self.max_grad_norm <= 0 or self.weight_factor <= 0:
            raise ConfigError("training.max_grad_norm and training.weight_factor must be positive")
        if self.max_drop is not None and not 0 <= float(self.max_drop) < 1:
            raise ConfigError(f"training.max_drop={self.max_drop}: use a fraction in [0, 1)")
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ConfigError(f"training.devices={self.devices!r}: use an integer >= 1 (the GPUs of one worker a "
                              "run trains on; 1 = no torchrun)")
        if self.devices > 1 and self.grad_sample_mode == "bk":
            raise ConfigError(f"training.devices={self.devices} with grad_sample_mode bk: book-keeping clipping "
                              "trains in one process; use grad_sample_mode hooks or ghost with more than one device")
        if self.sharding not in SHARDINGS:
            raise ConfigError(f"training.sharding={self.sharding!r}: use one of {', '.join(SHARDINGS)}")
        if self.sharding == "fsdp" and (self.devices < 2 or self.grad_sample_mode != "ghost"):
            raise ConfigError(f"training.sharding=fsdp shards the model over the ranks of a torchrun job with Opacus "
                              f"ghost clipping: set training.devices >= 2 (now {self.devices}) and "
                              f"training.grad_sample_mode ghost (now {self.grad_sample_mode}), or sharding none")
        if self.warmup_steps < 0 or self.num_threads < 0:
            raise ConfigError("training.warmup_steps and training.num_threads must be >= 0")
        for name in ("forecast_series", "forecast_eval_tail"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"training.{name}={getattr(self, name)}: use a positive integer")
        if self.forecast_window < 2:
            raise ConfigError(f"training.forecast_window={self.forecast_window}: use at least 2 points")
        if self.forecast_length <= self.forecast_window + self.forecast_eval_tail:
            raise ConfigError(f"training.forecast_length={self.forecast_length}: must exceed forecast_window + "
                              f"forecast_eval_tail ({self.forecast_window} + {self.forecast_eval_tail}) so every "
                              "series has a training window before its held-out tail")

    def for_forecaster(self) -> TrainingConfig:
        """The settings of the domain's forecaster slot: its DPLSTM trains in full from a random init at the rate
        it was tuned with; epochs, batch size, warm-up and the rest stay the domain's (the plan's accounting
        reads the same values)."""
        return replace(self, base="scratch", method="full", learning_rate=5e-4, min_learning_rate=0.0,
                       monthly_learning_rate=5e-4, monthly_min_learning_rate=min(self.monthly_min_learning_rate, 5e-4),
                       min_n_epsilon=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The values as a mapping."""
        return asdict(self)

    def weight_terms(self) -> tuple[str, ...]:
        """The lexicon's terms ('' -> none)."""
        if not self.weight_terms_file:
            return ()
        from pipelines.train.data import read_lexicon

        path = Path(self.weight_terms_file)
        return read_lexicon(path if path.is_absolute() else PROJECT_ROOT / path)
