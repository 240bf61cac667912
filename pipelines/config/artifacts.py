"""The ``artifacts`` section: where model artifacts live and how strict the promotion gate is."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.config.base import ConfigError


@dataclass(frozen=True)
class ArtifactsConfig:
    """Where model artifacts live and how strict the promotion gate is.

    Attributes:
        prefix: key prefix of every model object (``<prefix>/<domain>/artifacts/...``).
        max_drop: largest relative drop of the gate metric that still promotes (0.05 = 5%).
            A domain may override it with ``domains.<d>.training.max_drop``.
        cache_dir: local folder that fetched artifacts are kept in; empty = ``<tmp>/mlops-models``.
    """

    prefix: str = "models"
    max_drop: float = 0.05
    cache_dir: str = ""

    def __post_init__(self) -> None:
        parts = self.prefix.split("/")
        if not self.prefix or "" in parts or ".." in parts:
            raise ConfigError(f"artifacts.prefix={self.prefix!r} must be a non-empty key prefix without "
                              "leading/trailing '/' (e.g. models)")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)):
            raise ConfigError(f"artifacts.max_drop={self.max_drop!r} must be a number such as 0.05")
        if not 0.0 <= self.max_drop < 1.0:
            raise ConfigError(f"artifacts.max_drop={self.max_drop}: use a fraction in [0, 1), e.g. 0.05 for 5%")
        if not isinstance(self.cache_dir, str):
            raise ConfigError(f"artifacts.cache_dir={self.cache_dir!r} must be a path string (or empty)")

    @property
    def cache_path(self) -> Path:
        """The folder fetched artifacts are cached in."""
        return Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir()) / "mlops-models"
