"""A domain's effective governance rules: the ``governance`` defaults merged with its own overrides."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipelines.config import PROJECT_ROOT, CleanConfig, PiiConfig, PipelineConfig, SensitiveConfig


@dataclass(frozen=True)
class DomainRules:
    """Validated stage configs for one domain (built once per task)."""

    clean: CleanConfig
    pii: PiiConfig
    sensitive: SensitiveConfig  # this domain's policy as the default
    sensitive_lists: tuple[Path, ...]


def domain_rules(config: PipelineConfig, domain: str) -> DomainRules:
    """The stage configs for ``domain`` (validated when the config loaded, ``config.for_domain(domain)``)."""
    settings = config.for_domain(domain)
    lists = (config.governance.sensitive or {}).get("word_lists", ["config/sensitive_words.txt"])
    return DomainRules(clean=settings.clean, pii=settings.pii, sensitive=settings.sensitive,
                       sensitive_lists=tuple(p if p.is_absolute() else PROJECT_ROOT / p for p in map(Path, lists)))


@lru_cache(maxsize=4)
def lexicon_for(lists: tuple[Path, ...]):
    """The sensitive-word lexicon (bundled list + word lists), compiled once per process."""
    from pipelines.sensitive import load_lexicon

    lexicon = load_lexicon(extensions=lists)
    lexicon.automaton  # noqa: B018 - compile now, not inside the first batch
    return lexicon
