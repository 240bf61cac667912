"""The serving service's configuration: ``ServingConfig`` lives in ``pipelines.config.serving`` (section
``serving:``, validated when the file loads, ``config.serving``); command-line overrides go through ``override_serving``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipelines.config import ConfigError, PipelineConfig
from pipelines.config.base import coerce
from pipelines.config.serving import INPUT_POLICIES, ServingConfig

__all__ = ["INPUT_POLICIES", "ServingConfig", "override_serving", "served_domains"]


def override_serving(*, config: PipelineConfig, **overrides: Any) -> ServingConfig:
    """``config.serving`` with ``overrides`` (e.g. from the command line; ``None`` = not given) applied.

    Raises:
        ConfigError: an unknown key, a bad value, or a served domain that is not configured.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config.serving
    unknown = sorted(set(given) - set(ServingConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"serving: unknown key(s) {unknown}; known: {sorted(ServingConfig.__dataclass_fields__)}")
    try:
        built = replace(config.serving, **coerce(ServingConfig, given))
    except TypeError as exc:
        raise ConfigError(f"serving: {exc}") from None
    for domain in built.domains:
        config.domain(domain)
    return built


def served_domains(config: PipelineConfig, serving: ServingConfig) -> dict[str, str]:
    """``{domain: task}`` of the domains this server serves (all configured ones when none are listed)."""
    names = serving.domains or tuple(sorted(config.domains))
    return {name: config.domain(name).task for name in names}
