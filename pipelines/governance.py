"""A domain's effective governance rules: the ``governance`` defaults merged with its own overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.config import ConfigError, PipelineConfig


def _merged(defaults: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(defaults or {})
    out.update(override or {})
    return out


@dataclass(frozen=True)
class DomainRules:
    """Validated stage configs for one domain (built once per task)."""

    clean: Any  # pipelines.clean.CleanConfig
    pii: Any  # pipelines.pii.PiiConfig


def domain_rules(config: PipelineConfig, domain: str) -> DomainRules:
    """Build the stage configs for ``domain``; a bad rule raises ConfigError naming the domain."""
    from pipelines.clean import CleanConfig
    from pipelines.pii import PiiConfig

    d = config.domain(domain)
    clean = _merged(config.governance.clean, d.governance.get("clean"))
    clean.setdefault("allowed_languages", list(d.languages))
    try:
        return DomainRules(
            clean=CleanConfig.from_mapping(clean),
            pii=PiiConfig.from_mapping(_merged(config.governance.pii, d.governance.get("pii"))),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"governance rules of domain {domain!r}: {exc}") from None
