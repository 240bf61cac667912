"""The artifacts stage's configuration: ``ArtifactsConfig`` lives in ``pipelines.config.artifacts``
(section ``artifacts:``, validated when the file loads); a domain's gate is ``config.for_domain(d).max_drop``."""

from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.config.artifacts import ArtifactsConfig

__all__ = ["ArtifactsConfig", "artifacts_config", "domain_max_drop"]


def artifacts_config(config: PipelineConfig) -> ArtifactsConfig:
    """The ``artifacts`` section (``config.artifacts``; kept for callers being migrated)."""
    return config.artifacts


def domain_max_drop(config: PipelineConfig, domain: str) -> float:
    """The gate's ``max_drop`` for a domain (``config.for_domain(domain).max_drop``; kept for callers being migrated):
    ``domains.<d>.training.max_drop`` if set, else ``artifacts.max_drop``."""
    return config.for_domain(domain).max_drop
