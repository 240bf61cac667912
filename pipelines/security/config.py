"""``security:`` section: ``SecurityConfig`` lives in ``pipelines.config.security`` (validated when the
file loads, ``config.security``)."""

from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.config.security import MIN_AUDIT_RETENTION_DAYS, SecurityConfig

__all__ = ["MIN_AUDIT_RETENTION_DAYS", "SecurityConfig", "load_security_config"]


def load_security_config(config: PipelineConfig) -> SecurityConfig:
    """The ``security`` section (``config.security``; kept for callers being migrated)."""
    return config.security
