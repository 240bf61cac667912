"""Configuration: one frozen dataclass per concern, loaded from a YAML file plus the environment.

The file is ``config/pipeline.yaml`` unless ``PIPELINE_CONFIG`` names another. Any scalar can be
overridden with ``PIPELINE__<SECTION>__<KEY>`` (for example ``PIPELINE__DEDUP__BUCKETS=1024``);
``PIPELINE_S3_ENDPOINT_URL`` and ``PIPELINE_BUCKET`` are honoured as shortcuts because the service
scripts export them. This module is imported by DAG files at parse time, so it stays light
(``yaml`` and the standard library only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "pipeline.yaml"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TASKS = ("classification", "causal_lm")
LANGUAGES = ("zh", "en", "other")


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and what to do."""


@dataclass(frozen=True)
class StorageConfig:
    """Where the object store is and how its keys are laid out."""

    bucket: str
    endpoint_url: str = ""
    region: str = "us-east-1"
    landing_prefix: str = "landing"
    curated_prefix: str = "curated"
    quarantine_prefix: str = "quarantine"
    index_prefix: str = "index"
    staging_prefix: str = "staging"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise ConfigError(
                f"storage.bucket={self.bucket!r} is not a valid S3 bucket name "
                "(3-63 lowercase letters, digits, '.' or '-')"
            )
        for name in ("landing_prefix", "curated_prefix", "quarantine_prefix", "index_prefix", "staging_prefix"):
            value = getattr(self, name)
            if not value or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"storage.{name}={value!r} must be a non-empty prefix without leading/trailing '/'")


@dataclass(frozen=True)
class SourceConfig:
    """A landing source: ``files`` (one folder per domain) or ``feedback`` (records name their domain)."""

    name: str
    kind: str
    prefix: str

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"ingest.sources: name {self.name!r} must match {_NAME_RE.pattern}")
        if self.kind not in ("files", "feedback"):
            raise ConfigError(f"ingest.sources[{self.name}].kind={self.kind!r}: use 'files' or 'feedback'")
        if self.kind == "files" and "{domain}" not in self.prefix:
            raise ConfigError(f"ingest.sources[{self.name}].prefix must contain '{{domain}}' for kind 'files'")

    def prefix_for(self, domain: str) -> str:
        return self.prefix.replace("{domain}", domain)


@dataclass(frozen=True)
class IngestConfig:
    """What the ingest step reads and how it decodes it."""

    sources: tuple[SourceConfig, ...]
    encodings: tuple[str, ...] = ("utf-8", "gb18030")
    max_file_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("ingest.sources is empty: declare at least one source")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"ingest.sources: duplicate source names in {names}")
        for encoding in self.encodings:
            try:
                "".encode(encoding)
            except LookupError:
                raise ConfigError(f"ingest.encodings: unknown encoding {encoding!r}") from None
        if self.max_file_bytes <= 0:
            raise ConfigError("ingest.max_file_bytes must be positive")


@dataclass(frozen=True)
class DedupConfig:
    """Shape of the persistent hash index (see ``pipelines.dedup.index``)."""

    buckets: int = 256
    compact_after: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.buckets <= 65536:
            raise ConfigError(f"dedup.buckets={self.buckets}: use 1..65536")
        if self.compact_after < 2:
            raise ConfigError(f"dedup.compact_after={self.compact_after}: use >= 2")


@dataclass(frozen=True)
class ValidationConfig:
    """The Great Expectations suite applied to every curated batch."""

    suite: Path

    def __post_init__(self) -> None:
        if not self.suite.is_file():
            raise ConfigError(f"validation.suite: {self.suite} does not exist")


@dataclass(frozen=True)
class FeedbackConfig:
    """How rated answers from the serving API are used."""

    train_min_rating: int = 4
    review_max_rating: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.review_max_rating < self.train_min_rating <= 5:
            raise ConfigError("feedback: need 1 <= review_max_rating < train_min_rating <= 5")


@dataclass(frozen=True)
class AlertsConfig:
    """Alert channels shared by DAGs and services."""

    webhook_url: str = ""
    email_to: tuple[str, ...] = ()
    smtp_host: str = ""
    smtp_port: int = 25


@dataclass(frozen=True)
class GovernanceConfig:
    """Governance rules applied before dedup: cleaning, PII masking, sensitive words.

    The mappings are the YAML as written (validated by each stage's own config class when a domain's
    effective rules are built, see ``pipelines.governance``); a domain's ``governance`` block
    overrides keys of these defaults.
    """

    clean: Mapping[str, Any] = field(default_factory=dict)
    pii: Mapping[str, Any] = field(default_factory=dict)
    sensitive: Mapping[str, Any] = field(default_factory=dict)
    label: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainConfig:
    """One business domain: its training task, the languages it accepts and its governance overrides."""

    name: str
    task: str = "classification"
    languages: tuple[str, ...] = ("en",)
    governance: Mapping[str, Any] = field(default_factory=dict)
    # Raw blocks validated by their stage's own config class (pipelines.train, pipelines.privacy).
    training: Mapping[str, Any] = field(default_factory=dict)
    privacy: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name) or self.name == "feedback":
            raise ConfigError(f"domains: {self.name!r} must match {_NAME_RE.pattern} and not be 'feedback'")
        if self.task not in TASKS:
            raise ConfigError(f"domains.{self.name}.task={self.task!r}: use one of {TASKS}")
        unknown = set(self.languages) - set(LANGUAGES)
        if unknown:
            raise ConfigError(f"domains.{self.name}.languages: unknown {sorted(unknown)}; use {LANGUAGES}")
        bad = set(self.governance) - {"clean", "pii", "sensitive", "label"}
        if bad:
            raise ConfigError(f"domains.{self.name}.governance: unknown section(s) {sorted(bad)}; "
                              "use clean, pii, sensitive, label")


@dataclass(frozen=True)
class SectionsConfig:
    """Sections owned by later stages, kept as the YAML wrote them and validated by each stage's config class.

    ``training`` (pipelines.train), ``privacy`` (pipelines.privacy), ``artifacts`` (pipelines.artifacts),
    ``serving`` (pipelines.serving), ``security`` (pipelines.security), ``ops`` (pipelines.ops).
    """

    training: Mapping[str, Any] = field(default_factory=dict)
    privacy: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    serving: Mapping[str, Any] = field(default_factory=dict)
    security: Mapping[str, Any] = field(default_factory=dict)
    ops: Mapping[str, Any] = field(default_factory=dict)


STAGE_SECTIONS = tuple(SectionsConfig.__dataclass_fields__)


@dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration, one attribute per concern."""

    storage: StorageConfig
    ingest: IngestConfig
    dedup: DedupConfig
    validation: ValidationConfig
    feedback: FeedbackConfig
    alerts: AlertsConfig
    domains: Mapping[str, DomainConfig] = field(default_factory=dict)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    sections: SectionsConfig = field(default_factory=SectionsConfig)
    source_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.domains:
            raise ConfigError("domains is empty: declare at least one domain")

    def domain(self, name: str) -> DomainConfig:
        """Return a domain's config, or raise ConfigError listing the known ones."""
        try:
            return self.domains[name]
        except KeyError:
            raise ConfigError(f"unknown domain {name!r}; configured: {', '.join(sorted(self.domains))}") from None


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    storage = raw.setdefault("storage", {})
    if environ.get("PIPELINE_S3_ENDPOINT_URL") is not None:
        storage["endpoint_url"] = environ["PIPELINE_S3_ENDPOINT_URL"]
    if environ.get("PIPELINE_BUCKET"):
        storage["bucket"] = environ["PIPELINE_BUCKET"]
    for key, value in environ.items():
        if not key.startswith("PIPELINE__"):
            continue
        parts = key[len("PIPELINE__"):].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"{key}: use PIPELINE__<SECTION>__<KEY>")
        section, name = parts
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{key}: section {section!r} is not a mapping")
        target[name] = _EnvValue(value)
    return raw


class _EnvValue(str):
    """A value from the environment: typed by the field it sets (text stays text: bucket '123')."""


def _coerce(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, _EnvValue) and key in cls.__dataclass_fields__:
            kind = str(cls.__dataclass_fields__[key].type)
            if kind in ("str", "Path"):
                value = str(value) if kind == "str" else Path(value)
            else:
                try:
                    value = yaml.safe_load(value) if value else ""
                except yaml.YAMLError:
                    raise ConfigError(f"{key}={value!r} from the environment is not a valid value") from None
                if kind.startswith("tuple") and isinstance(value, str):
                    value = [v for v in value.split(",") if v]
                if kind.startswith("tuple") and isinstance(value, list):
                    value = tuple(value)
        if key in cls.__dataclass_fields__ and isinstance(value, str) and value.strip():
            kind = str(cls.__dataclass_fields__[key].type)
            # YAML 1.1 reads "5e-4" (no dot) as a string: a number field takes it as the number it means.
            if kind.split("|")[0].strip() in ("float", "int") or kind in ("float | None", "int | None"):
                try:
                    number = float(value)
                except ValueError:
                    raise ConfigError(f"{key}={value!r}: expected a number") from None
                value = int(number) if kind.startswith("int") and number.is_integer() else number
        out[key] = value
    return out


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


def _build(cls: type, section: str, values: Mapping[str, Any], **extra: Any) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {sorted(unknown)}; known: {sorted(known - set(extra))}")
    try:
        return cls(**{**_coerce(cls, values), **extra})
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from None


def build_stage_config(cls: type, section: str, values: Mapping[str, Any], **extra: Any) -> Any:
    """Build a stage's frozen config dataclass from a raw section (unknown keys and bad types -> ConfigError).

    Values that came from the environment (``PIPELINE__TRAINING__SEED=7``) are typed by the field they set.
    """
    return _build(cls, section, dict(values), **extra)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Load the pipeline configuration.

    Args:
        path: YAML file; defaults to ``$PIPELINE_CONFIG`` or ``config/pipeline.yaml``.
        environ: environment to read overrides from (defaults to ``os.environ``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing or a value is invalid (the message names the key).
    """
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get("PIPELINE_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found (set PIPELINE_CONFIG or create it)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {config_path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {config_path}: top level must be a mapping")
    raw = _apply_env(raw, environ)

    ingest_raw = _section(raw, "ingest")
    sources = tuple(
        _build(SourceConfig, "ingest.sources", s) for s in (ingest_raw.pop("sources", None) or [])
    )
    if "encodings" in ingest_raw and not isinstance(ingest_raw["encodings"], _EnvValue):
        ingest_raw["encodings"] = tuple(ingest_raw["encodings"])
    validation_raw = _section(raw, "validation")
    suite = Path(validation_raw.get("suite", "expectations/curated_batch.json"))
    validation_raw["suite"] = suite if suite.is_absolute() else PROJECT_ROOT / suite
    alerts_raw = _section(raw, "alerts")
    if isinstance(alerts_raw.get("email_to"), str):
        alerts_raw["email_to"] = [a for a in alerts_raw["email_to"].split(",") if a]
    alerts_raw["email_to"] = tuple(alerts_raw.get("email_to") or ())

    domains: dict[str, DomainConfig] = {}
    for name, values in _section(raw, "domains").items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"domains.{name}: expected a mapping (task, languages), got {values!r}")
        values = dict(values or {})
        for block in ("governance", "training", "privacy"):
            if not isinstance(values.get(block) or {}, dict):
                raise ConfigError(f"domains.{name}.{block}: expected a mapping")
        if "languages" in values:
            values["languages"] = tuple(values["languages"])
        domains[name] = _build(DomainConfig, f"domains.{name}", values, name=name)

    unknown_sections = set(raw) - {"storage", "ingest", "dedup", "validation", "feedback", "alerts", "domains",
                                   "governance", *STAGE_SECTIONS}
    if unknown_sections:
        raise ConfigError(f"{config_path}: unknown section(s) {sorted(unknown_sections)}")
    return PipelineConfig(
        storage=_build(StorageConfig, "storage", _section(raw, "storage")),
        ingest=_build(IngestConfig, "ingest", ingest_raw, sources=sources),
        dedup=_build(DedupConfig, "dedup", _section(raw, "dedup")),
        validation=_build(ValidationConfig, "validation", validation_raw),
        feedback=_build(FeedbackConfig, "feedback", _section(raw, "feedback")),
        alerts=_build(AlertsConfig, "alerts", alerts_raw),
        domains=domains,
        governance=_build(GovernanceConfig, "governance", _section(raw, "governance")),
        sections=SectionsConfig(**{name: _section(raw, name) for name in STAGE_SECTIONS}),
        source_path=config_path,
    )
