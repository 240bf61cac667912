"""Training settings to a ``TrainSpec``. The ``training`` section itself is ``pipelines.config.training``
(typed and validated when the file loads; a domain's effective one is ``config.for_domain(d).training``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.config import ConfigError
from pipelines.config.training import TrainingConfig
from pipelines.train.spec import TrainSpec

__all__ = ["TrainingConfig", "spec_from_config"]


def spec_from_config(
    cfg: TrainingConfig,
    *,
    model_dir: str,
    out_dir: str,
    checkpoint_dir: str,
    train_path: str,
    eval_path: str,
    noise_multiplier: float,
    delta: float,
    kind: str = "weekly",
    accountant: str = "rdp",
    steps: int | None = None,
    overrides: Mapping[str, Any] | None = None,
):
    """The TrainSpec of a weekly fine-tune or monthly retrain under ``cfg``.

    Args:
        cfg: the domain's training config.
        model_dir / out_dir / checkpoint_dir: start model, output and checkpoint folders.
        train_path / eval_path: JSONL examples (pipelines.train.data.write_jsonl).
        noise_multiplier / delta / accountant: from the privacy stage's calibration (reserved in the ledger).
        kind: ``weekly`` or ``monthly`` (the monthly retrain uses the monthly_* epochs and rates).
        steps: the run's planned optimizer steps; with ``cfg.warmup_fraction`` > 0 the warm-up is that share of them
            (a fraction keeps the recipe's shape whatever the data's size; the monthly retrain warms up too).
        overrides: TrainSpec fields to set last (e.g. ``{"log_every": 10}``).
    """
    if kind not in ("weekly", "monthly"):
        raise ConfigError(f"kind={kind!r}: use weekly or monthly")
    monthly = kind == "monthly"
    warmup = cfg.warmup_steps
    if cfg.warmup_fraction > 0:
        if steps is None:
            raise ConfigError("training.warmup_fraction needs the run's planned steps: pass steps=")
        warmup = max(1, int(cfg.warmup_fraction * steps))
    values: dict[str, Any] = dict(
        model_dir=model_dir, out_dir=out_dir, checkpoint_dir=checkpoint_dir, train_path=train_path,
        eval_path=eval_path, epochs=cfg.monthly_epochs if monthly else cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.monthly_learning_rate if monthly else cfg.learning_rate,
        min_learning_rate=cfg.monthly_min_learning_rate if monthly else cfg.min_learning_rate,
        schedule=cfg.schedule, warmup_steps=warmup, weight_decay=cfg.weight_decay,
        max_length=cfg.max_length, noise_multiplier=noise_multiplier, delta=delta, max_grad_norm=cfg.max_grad_norm,
        secure_mode=cfg.secure_mode, grad_sample_mode=cfg.grad_sample_mode, accountant=accountant,
        method=cfg.method, sharding=cfg.sharding, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, seed=cfg.seed, device=cfg.device,
        weight_terms=cfg.weight_terms(), weight_factor=cfg.weight_factor, num_threads=cfg.num_threads or None)
    values.update(overrides or {})
    return TrainSpec(**values)
