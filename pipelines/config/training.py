"""The ``training`` section: how a domain's models are trained (``domains.<d>.training`` overrides keys)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.base import PROJECT_ROOT, ConfigError


@dataclass(frozen=True)
class TrainingConfig:
    """How a domain's models are trained (the DP budget itself is the privacy stage's).

    Attributes:
        epochs / monthly_epochs: passes over the data of a weekly fine-tune / a monthly full retrain.
        batch_size: expected (Poisson) batch size.
        learning_rate / min_learning_rate: weekly peak rate and the rate the schedule decays to.
        monthly_learning_rate / monthly_min_learning_rate: the same for the monthly retrain (decays to 1e-6).
        schedule: ``cosine``, ``linear`` or ``constant``; warmup_steps before it.
        weight_decay: AdamW weight decay.
        max_length: tokens per example.
        max_grad_norm: per-sample clipping norm C.
        grad_sample_mode: ``hooks``, ``ghost`` (ghost clipping: less memory on large batches) or ``bk``
            (book-keeping clipping, pipelines.train.fastclip: one backward pass, the fastest; not with secure_mode).
        method: ``full`` or ``lora``; lora_r / lora_alpha: adapter rank and scaling.
        eval_percent: share of records (by content hash) held out for evaluation and the gate.
        size: base model size built for a domain (``tiny`` or ``small``); base: ``scratch`` or ``minilm``.
        seed: seeds init, sampling and noise.
        device: ``cpu``, ``cuda`` or ``auto``.
        secure_mode: Opacus CSPRNG for noise and sampling (needs torchcsprng on the training host).
        weight_terms_file: lexicon whose terms weigh an example's loss by ``weight_factor`` ("" = none;
            relative paths are from the project root).
        num_threads: torch CPU threads (0 = torch's default).
        devices: processes (GPUs on a GPU worker) one run trains on: 1 trains in the task's process, N > 1
            launches a torchrun job of N ranks (Opacus DPDDP, :func:`pipelines.finetune.run.launch_training`);
            the train task takes this many slots of the ``gpu`` pool, which counts GPUs.
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
    device: str = "auto"
    secure_mode: bool = False
    weight_terms_file: str = ""
    weight_factor: float = 1.5
    num_threads: int = 0
    devices: int = 1
    # Orchestration (pipelines.finetune): where runs checkpoint on the training host, the gate's metric
    # ("" = the task's: accuracy for classification, perplexity for causal_lm), the labels a base model
    # knows beyond the public sample's, and the multi-GPU settings (pipelines.train.ddp).
    checkpoint_root: str = ".local/checkpoints"
    gate_metric: str = ""
    max_drop: float | None = None
    labels: tuple[str, ...] = ()
    distributed: Mapping[str, Any] = field(default_factory=dict)
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
        if self.method not in ("full", "lora"):
            raise ConfigError(f"training.method={self.method!r}: use full or lora")
        if not 1 <= self.eval_percent <= 50:
            raise ConfigError(f"training.eval_percent={self.eval_percent}: use 1..50")
        if self.size not in ("tiny", "small"):
            raise ConfigError(f"training.size={self.size!r}: use tiny or small")
        if self.base not in ("scratch", "minilm"):
            raise ConfigError(f"training.base={self.base!r}: use scratch or minilm")
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
