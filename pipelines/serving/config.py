"""The serving service's configuration: ``ServingConfig`` lives in ``pipelines.config.serving`` (section
``serving:``, validated when the file loads, ``config.serving``); command-line overrides go through ``override_serving``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipelines.config import ConfigError, PipelineConfig
from pipelines.config.base import coerce
from pipelines.config.serving import INPUT_POLICIES, ServingConfig
from pipelines.serving.engine import EngineConfig

__all__ = ["INPUT_POLICIES", "ServingConfig", "engine_config", "override_serving", "served_domains"]


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


def engine_config(serving: ServingConfig) -> EngineConfig:
    """The generation engine ``serving.engine`` names, with its settings (``serving.engine_*``)."""
    return EngineConfig(backend=serving.engine, url=serving.engine_url, model=serving.engine_model,
                        timeout_s=serving.engine_timeout_seconds, num_blocks=serving.engine_num_blocks,
                        page_size=serving.engine_page_size, max_batch_tokens=serving.engine_max_batch_tokens,
                        dtype=serving.engine_dtype, cuda_graphs=serving.engine_cuda_graphs,
                        compile_level=serving.engine_compile_level)
