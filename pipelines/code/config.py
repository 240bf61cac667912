"""The ``code`` block of a code domain (``domains.<d>.code`` in ``config/pipeline.yaml``), typed and validated
when the file loads. A domain with this block reads repository snapshots from its landing folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.code.classify import ClassifyConfig
from pipelines.code.examples import ExampleConfig
from pipelines.code.scrub import ScrubConfig
from pipelines.config.base import ConfigError, build_stage_config

SUBJECTS = ("file", "repository")


@dataclass(frozen=True)
class CodeConfig:
    """A code domain's settings.

    Attributes:
        ledger_subject: the privacy subject of a file's record in the ledger: ``file`` (each file its own
            subject) or ``repository`` (every file of a repository one subject: group privacy over the repository).
        languages: languages kept (others quarantined with reason ``language``).
        max_line_chars / max_mean_line_chars / max_file_bytes: quarantine thresholds (minified, too large).
        internal_domains: hostname suffixes replaced as internal hosts (besides .internal, .corp, .local...).
        entropy_base64 / entropy_hex: quoted strings above these entropies (bits/char) are secrets.
        near_duplicate_threshold / num_perm: MinHash LSH near-duplicate report.
        fim_rate / context_lines / max_context_chars: training examples (``pipelines.code.examples``).
        max_retries: constrained Python completions tried before the service says it could not finish.
    """

    ledger_subject: str = "file"
    languages: tuple[str, ...] = ("python",)
    max_line_chars: int = 1000
    max_mean_line_chars: int = 300
    max_file_bytes: int = 1_000_000
    internal_domains: tuple[str, ...] = ()
    entropy_base64: float = 4.3
    entropy_hex: float = 3.0
    near_duplicate_threshold: float = 0.85
    num_perm: int = 128
    fim_rate: float = 0.5
    context_lines: int = 8
    max_context_chars: int = 400
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.ledger_subject not in SUBJECTS:
            raise ConfigError(f"code.ledger_subject={self.ledger_subject!r}: use one of {SUBJECTS}")
        if not 0 < self.near_duplicate_threshold <= 1 or self.num_perm < 16:
            raise ConfigError("code.near_duplicate_threshold must be in (0, 1] and code.num_perm >= 16")
        if not 0 <= self.max_retries <= 10:
            raise ConfigError("code.max_retries: use 0..10")
        try:  # the parts' own checks, named under code.
            self.classify, self.scrub, self.examples  # noqa: B018
        except ValueError as exc:
            raise ConfigError(f"code: {exc}") from None

    @property
    def classify(self) -> ClassifyConfig:
        return ClassifyConfig(max_line_chars=self.max_line_chars, max_mean_line_chars=self.max_mean_line_chars,
                              max_file_bytes=self.max_file_bytes, languages=tuple(self.languages))

    @property
    def scrub(self) -> ScrubConfig:
        return ScrubConfig(internal_domains=tuple(self.internal_domains), entropy_base64=self.entropy_base64,
                           entropy_hex=self.entropy_hex)

    @property
    def examples(self) -> ExampleConfig:
        return ExampleConfig(fim_rate=self.fim_rate, context_lines=self.context_lines,
                             max_context_chars=self.max_context_chars)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, *, where: str = "code") -> CodeConfig:
        """Build from a raw YAML block; unknown keys and bad values fail naming ``where.<key>``."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        return build_stage_config(cls, where, dict(values or {}))


def code_settings(config: Any, domain: str) -> CodeConfig | None:
    """The code settings of ``domain`` (a ``PipelineConfig``), or None when it is not a code domain."""
    block = getattr(config.domain(domain), "code", None)
    return None if block is None else CodeConfig.from_mapping(block, where=f"domains.{domain}.code")
