"""``governance.label``: which labeller labels a domain's unlabelled records and how many go to review.

The review defaults (share 0.15, low_confidence 0.6) are written here once; ``pipelines.review.sampling``
and the ``governance.label`` section take them from ``ReviewConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config.base import ConfigError


@dataclass(frozen=True)
class ReviewConfig:
    """How much of a partition goes to review.

    Attributes:
        share: the least fraction of a partition's records to review (at least ``ceil(share * n)``).
        low_confidence: records whose confidence is below this are always reviewed.
    """

    share: float = 0.15
    low_confidence: float = 0.6

    def __post_init__(self) -> None:
        for name in ("share", "low_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"governance.label.{name}={value!r}: expected a number in [0, 1]")
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"governance.label.share={self.share!r} must be in [0, 1] "
                              "(0.15 reviews 15% of each partition)")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ConfigError(f"governance.label.low_confidence={self.low_confidence!r} must be in [0, 1]")


@dataclass(frozen=True)
class LabelConfig:
    """``governance.label`` (a domain's ``governance.label`` overrides keys).

    Attributes:
        share / low_confidence: see ``ReviewConfig``.
        labeller: the published labeller (``python -m pipelines label publish``) that labels the domain's
            unlabelled records; ``None`` = the domain's own name for classification domains, none otherwise.
        device: where the ``label_shard`` task predicts: ``auto`` (a GPU when its worker has one: the task
            runs on the ``gpu`` queue under CeleryExecutor; else the CPU, in INT8 when the labeller's INT8
            check passed), ``cpu``, ``cuda`` or ``cuda:<n>``.
        batch_size: texts per forward pass; 0 = the labeller's own ``predict_batch_size`` on the CPU, 512 on a GPU.
    """

    share: float = ReviewConfig.share
    low_confidence: float = ReviewConfig.low_confidence
    labeller: str | None = None
    device: str = "auto"
    batch_size: int = 0

    def __post_init__(self) -> None:
        self.review  # noqa: B018 - validates share and low_confidence
        if self.labeller is not None and (not isinstance(self.labeller, str) or not self.labeller):
            raise ConfigError(f"governance.label.labeller={self.labeller!r}: name a published labeller")
        device = self.device
        if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                               or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"governance.label.device={device!r}: use auto, cpu, cuda or cuda:<n>")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ConfigError(f"governance.label.batch_size={self.batch_size!r}: a whole number >= 0 "
                              "(0: the labeller's own)")

    def predict_batch_size(self, device: str, labeller_default: int) -> int:
        """Texts per forward pass on ``device`` (a resolved device)."""
        return self.batch_size or (labeller_default if device == "cpu" else 512)

    @property
    def review(self) -> ReviewConfig:
        """The review sampling settings."""
        return ReviewConfig(share=self.share, low_confidence=self.low_confidence)
