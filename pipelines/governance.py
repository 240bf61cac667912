"""A domain's effective governance rules: the ``governance`` defaults merged with its own overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.config import PROJECT_ROOT, ConfigError, PipelineConfig


def _merged(defaults: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(defaults or {})
    out.update(override or {})
    return out


@dataclass(frozen=True)
class DomainRules:
    """Validated stage configs for one domain (built once per task)."""

    clean: Any  # pipelines.clean.CleanConfig
    pii: Any  # pipelines.pii.PiiConfig
    sensitive: Any  # pipelines.sensitive.SensitiveConfig (this domain's policy as the default)
    sensitive_lists: tuple[Path, ...]


def domain_rules(config: PipelineConfig, domain: str) -> DomainRules:
    """Build the stage configs for ``domain``; a bad rule raises ConfigError naming the domain."""
    from pipelines.clean import CleanConfig
    from pipelines.pii import PiiConfig
    from pipelines.sensitive import SensitiveConfig

    d = config.domain(domain)
    clean = _merged(config.governance.clean, d.governance.get("clean"))
    clean.setdefault("allowed_languages", list(d.languages))
    sensitive = dict(config.governance.sensitive or {})
    lists = sensitive.pop("word_lists", ["config/sensitive_words.txt"])
    policy = (d.governance.get("sensitive") or {}).get("policy") or sensitive.get("domains", {}).get(domain) \
        or sensitive.get("default", "flag")
    try:
        return DomainRules(
            clean=CleanConfig.from_mapping(clean),
            pii=PiiConfig.from_mapping(_merged(config.governance.pii, d.governance.get("pii"))),
            sensitive=SensitiveConfig(default=policy),
            sensitive_lists=tuple(p if Path(p).is_absolute() else PROJECT_ROOT / p for p in map(Path, lists)),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"governance rules of domain {domain!r}: {exc}") from None


@lru_cache(maxsize=4)
def lexicon_for(lists: tuple[Path, ...]):
    """The sensitive-word lexicon (bundled list + word lists), compiled once per process."""
    from pipelines.sensitive import load_lexicon

    lexicon = load_lexicon(extensions=lists)
    lexicon.automaton  # noqa: B018 - compile now, not inside the first batch
    return lexicon
