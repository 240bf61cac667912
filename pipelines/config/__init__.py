"""Configuration: one frozen dataclass per section, every section typed and validated when the file loads.

The file is ``config/pipeline.yaml`` unless ``PIPELINE_CONFIG`` names another. Any scalar can be
overridden with ``PIPELINE__<SECTION>__<KEY>`` (for example ``PIPELINE__DEDUP__BUCKETS=1024`` or
``PIPELINE__TRAINING__EPOCHS=4``); ``PIPELINE_S3_ENDPOINT_URL`` and ``PIPELINE_BUCKET`` are honoured as
shortcuts because the service scripts export them. An unknown key or a bad value in any section, or in a
domain's ``training``/``privacy``/``governance`` override, fails ``load_config`` with a message naming the
key (``training: unknown key(s) ['lerning_rate'] (training.lerning_rate)``), so a typo fails the first
command, not a GPU task hours later. A domain's effective settings are ``config.for_domain(name)``.

Layout (each module holds one section; this package imports ``yaml`` and the standard library only,
because DAG files import it at parse time):

- ``base``: ``ConfigError``, ``PROJECT_ROOT``, building a dataclass from a raw section.
- ``core``: storage, ingest, dedup, validation, feedback, alerts, governance, domains.
- ``training``, ``privacy``, ``artifacts``, ``serving``, ``security``, ``ops``, ``label``: the stage sections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.config.artifacts import ArtifactsConfig
from pipelines.config.base import (
    DEFAULT_CONFIG_PATH,
    PROJECT_ROOT,
    ConfigError,
    EnvValue,
    build_stage_config,
    check_keys,
    coerce,
    section,
)
from pipelines.config.core import (
    LANGUAGES,
    TASKS,
    AlertsConfig,
    DedupConfig,
    DomainConfig,
    FeedbackConfig,
    GovernanceConfig,
    IngestConfig,
    SourceConfig,
    StorageConfig,
    ValidationConfig,
)
from pipelines.config.governance import POLICIES, CleanConfig, PiiConfig, SensitiveConfig
from pipelines.config.label import LabelConfig, ReviewConfig
from pipelines.config.ops import OpsConfig, SlaConfig, Thresholds
from pipelines.config.privacy import SEED_DEFAULTS, PrivacyConfig
from pipelines.config.security import SecurityConfig
from pipelines.config.serving import ServingConfig
from pipelines.config.training import TrainingConfig

__all__ = [
    "DEFAULT_CONFIG_PATH", "LANGUAGES", "PROJECT_ROOT", "STAGE_SECTIONS", "TASKS", "AlertsConfig", "ArtifactsConfig",
    "CleanConfig", "ConfigError", "DedupConfig", "DomainConfig", "DomainSettings", "FeedbackConfig", "GovernanceConfig",
    "IngestConfig", "LabelConfig", "OpsConfig", "PiiConfig", "PipelineConfig", "PrivacyConfig", "ReviewConfig", "SecurityConfig",
    "SensitiveConfig", "ServingConfig", "SlaConfig", "SourceConfig", "StorageConfig", "Thresholds", "TrainingConfig",
    "ValidationConfig", "build_stage_config", "load_config",
]


STAGE_SECTIONS = ("training", "privacy", "artifacts", "serving", "security", "ops")


@dataclass(frozen=True)
class DomainSettings:
    """One domain's effective settings: the section defaults merged with its ``domains.<d>`` overrides.

    Attributes:
        name / task / languages: from ``domains.<d>``.
        training: ``training`` merged with ``domains.<d>.training``.
        privacy: seed budget < ``privacy`` < ``domains.<d>.privacy``; ``None`` when the domain has no budget
            (no seed and no ``epsilon``: it cannot train until one is set; ``require_privacy()`` says so).
        label: ``governance.label`` merged with ``domains.<d>.governance.label`` (labeller resolved).
        clean / pii: ``governance.clean`` / ``governance.pii`` merged with the domain's block (clean's
            ``allowed_languages`` defaults to the domain's languages).
        sensitive: the domain's sensitive-word policy as the default (its ``governance.sensitive.policy``, else
            ``governance.sensitive.domains.<d>``, else ``governance.sensitive.default``).
        governance: the raw ``governance`` defaults merged per stage with the domain's block (clean, pii,
            sensitive, label), as ``pipelines.governance.domain_rules`` reads them.
        max_drop: the promotion gate's largest relative drop: ``training.max_drop`` when set, else
            ``artifacts.max_drop``.
    """

    name: str
    task: str
    languages: tuple[str, ...]
    training: TrainingConfig
    privacy: PrivacyConfig | None
    label: LabelConfig
    clean: CleanConfig
    pii: PiiConfig
    sensitive: SensitiveConfig
    governance: Mapping[str, Mapping[str, Any]]
    max_drop: float

    def require_privacy(self) -> PrivacyConfig:
        """The domain's privacy budget, for a step that trains on its records.

        Raises:
            ConfigError: the domain has no budget (no seed and no ``epsilon``): it cannot train until one is set.
        """
        if self.privacy is None:
            raise ConfigError(f"privacy.epsilon is required for domain {self.name!r} (no built-in budget): set "
                              f"domains.{self.name}.privacy.epsilon in config/pipeline.yaml")
        return self.privacy


@dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration, one typed attribute per section."""

    storage: StorageConfig
    ingest: IngestConfig
    dedup: DedupConfig
    validation: ValidationConfig
    feedback: FeedbackConfig
    alerts: AlertsConfig
    domains: Mapping[str, DomainConfig] = field(default_factory=dict)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    source_path: Path | None = None
    # The training and privacy sections as written (after environment overrides): a domain's block is merged over
    # them before it is typed, so an override is validated exactly like the section it overrides.
    _stage_values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    # Derived from the fields above in __post_init__ (never passed in): ``dataclasses.replace`` of a section
    # recomputes it, so ``for_domain`` never answers with the settings of the config it was copied from.
    _settings: Mapping[str, DomainSettings] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.domains:
            raise ConfigError("domains is empty: declare at least one domain")
        object.__setattr__(self, "_settings", {name: _domain_settings(self, name) for name in self.domains})
        for name in self.serving.domains:
            self.domain(name)
        for name in self.artifacts.require_approval:
            if name not in self.domains:
                raise ConfigError(f"artifacts.require_approval: unknown domain {name!r}; configured: "
                                  f"{', '.join(sorted(self.domains))}")

    def domain(self, name: str) -> DomainConfig:
        """Return a domain's config, or raise ConfigError listing the known ones."""
        try:
            return self.domains[name]
        except KeyError:
            raise ConfigError(f"unknown domain {name!r}; configured: {', '.join(sorted(self.domains))}") from None

    def for_domain(self, name: str) -> DomainSettings:
        """A domain's effective training, privacy, label and governance settings and gate ``max_drop``.

        Raises:
            ConfigError: unknown domain (the message lists the configured ones).
        """
        self.domain(name)
        return self._settings[name]

    @property
    def thresholds(self) -> Thresholds:
        """The monitor's thresholds: ``ops.gpu_temperature_c``, ``ops.accuracy_drop``, ``serving.p95_alert_ms``."""
        return self.ops.thresholds(api_p95_ms=self.serving.p95_alert_ms)


def _merged(*blocks: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in blocks:
        out.update(block or {})
    return out


def _domain_settings(config: PipelineConfig, name: str) -> DomainSettings:
    d = config.domain(name)
    where = f"domains.{name}"
    try:
        training = build_stage_config(TrainingConfig, f"{where}.training",
                                      _merged(config._stage_values.get("training"), d.training))
        privacy_values = _merged(SEED_DEFAULTS.get(name), config._stage_values.get("privacy"), d.privacy)
        privacy = None if privacy_values.get("epsilon") is None else \
            build_stage_config(PrivacyConfig, f"{where}.privacy", privacy_values)
        label_values = _merged(config.governance.label, d.governance.get("label"))
        label_values.setdefault("labeller", name if d.task == "classification" else None)
        label = build_stage_config(LabelConfig, f"{where}.governance.label", label_values)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (effective settings of domain {name!r})") from None
    governance = {stage: _merged(getattr(config.governance, stage), d.governance.get(stage))
                  for stage in ("clean", "pii", "sensitive", "label")}
    try:
        clean = CleanConfig.from_mapping({"allowed_languages": list(d.languages), **governance["clean"]})
        pii = PiiConfig.from_mapping(governance["pii"])
        defaults = config.governance.sensitive
        policy = (d.governance.get("sensitive") or {}).get("policy") or (defaults.get("domains") or {}).get(name) \
            or defaults.get("default", "flag")
        sensitive = SensitiveConfig(default=policy)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"governance.{exc} (effective settings of domain {name!r})") from None
    max_drop = config.artifacts.max_drop if training.max_drop is None else float(training.max_drop)
    return DomainSettings(name=name, task=d.task, languages=d.languages, training=training, privacy=privacy,
                          label=label, clean=clean, pii=pii, sensitive=sensitive, governance=governance,
                          max_drop=max_drop)


def _check_governance_keys(where: str, blocks: Mapping[str, Any], *, domain: bool) -> None:
    """Unknown keys of the governance blocks, named before a merge hides where they came from."""
    sensitive_keys = {"policy"} if domain else {"word_lists", "default", "domains"}
    for stage, block in blocks.items():
        block = block or {}
        if stage == "label":
            check_keys(LabelConfig, f"{where}.label", block)
        elif stage in ("clean", "pii"):
            check_keys(CleanConfig if stage == "clean" else PiiConfig, f"{where}.{stage}", block,
                       exclude=("_drop", "_replace"))
        elif stage == "sensitive":
            unknown = sorted(set(block) - sensitive_keys)
            if unknown:
                named = ", ".join(f"{where}.sensitive.{k}" for k in unknown)
                raise ConfigError(f"{where}.sensitive: unknown key(s) {unknown} ({named}); known: "
                                  f"{sorted(sensitive_keys)}")
            if domain and "policy" in block and block["policy"] not in POLICIES:
                raise ConfigError(f"{where}.sensitive.policy={block['policy']!r}: use one of {list(POLICIES)}")


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
        name, item = parts
        target = raw.setdefault(name, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{key}: section {name!r} is not a mapping")
        target[item] = EnvValue(value)
    return raw


def _build(cls: type, where: str, values: Mapping[str, Any], **extra: Any) -> Any:
    return build_stage_config(cls, where, values, **extra)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Load and validate the pipeline configuration.

    Args:
        path: YAML file; defaults to ``$PIPELINE_CONFIG`` or ``config/pipeline.yaml``.
        environ: environment to read overrides from (defaults to ``os.environ``).

    Returns:
        The validated configuration, every section typed.

    Raises:
        ConfigError: the file is missing, or a key is unknown or a value invalid in any section or in a
            domain's override (the message names the key).
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

    unknown_sections = set(raw) - {"storage", "ingest", "dedup", "validation", "feedback", "alerts", "domains",
                                   "governance", *STAGE_SECTIONS}
    if unknown_sections:
        raise ConfigError(f"{config_path}: unknown section(s) {sorted(unknown_sections)}")

    ingest_raw = section(raw, "ingest")
    sources = tuple(_build(SourceConfig, "ingest.sources", s) for s in (ingest_raw.pop("sources", None) or []))
    validation_raw = section(raw, "validation")
    suite = Path(validation_raw.get("suite", "expectations/curated_batch.json"))
    validation_raw["suite"] = suite if suite.is_absolute() else PROJECT_ROOT / suite
    alerts_raw = section(raw, "alerts")
    if isinstance(alerts_raw.get("email_to"), str):
        alerts_raw["email_to"] = [a for a in alerts_raw["email_to"].split(",") if a]
    alerts_raw["email_to"] = tuple(alerts_raw.get("email_to") or ())

    domains: dict[str, DomainConfig] = {}
    for name, values in section(raw, "domains").items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"domains.{name}: expected a mapping (task, languages), got {values!r}")
        values = dict(values or {})
        for block in ("governance", "training", "privacy"):
            if not isinstance(values.get(block) or {}, dict):
                raise ConfigError(f"domains.{name}.{block}: expected a mapping")
        # A typo in a domain's override names the domain's key, before any merge hides where it came from.
        check_keys(TrainingConfig, f"domains.{name}.training", values.get("training") or {})
        check_keys(PrivacyConfig, f"domains.{name}.privacy", values.get("privacy") or {})
        for stage, block in (values.get("governance") or {}).items():
            if not isinstance(block or {}, dict):
                raise ConfigError(f"domains.{name}.governance.{stage}: expected a mapping")
        _check_governance_keys(f"domains.{name}.governance", values.get("governance") or {}, domain=True)
        if "languages" in values:
            values["languages"] = tuple(values["languages"])
        if "code" in values:  # a code domain (issue 18): its block is checked now, typed where it is used
            # Imported here: pipelines.code.config stands on pipelines.config.base, whose package is this module.
            from pipelines.code.config import CodeConfig

            values["code"] = dict(values["code"] or {})
            CodeConfig.from_mapping(values["code"], where=f"domains.{name}.code")
        domains[name] = _build(DomainConfig, f"domains.{name}", values, name=name)

    governance_raw = section(raw, "governance")
    for name in ("clean", "pii", "sensitive", "label"):
        if not isinstance(governance_raw.get(name) or {}, dict):
            raise ConfigError(f"governance.{name}: expected a mapping")
    _check_governance_keys("governance", governance_raw, domain=False)
    try:
        SensitiveConfig.from_mapping({k: v for k, v in (governance_raw.get("sensitive") or {}).items()
                                      if k != "word_lists"})
    except ConfigError as exc:
        raise ConfigError(f"governance.{exc}") from None
    lists = (governance_raw.get("sensitive") or {}).get("word_lists", [])
    if not isinstance(lists, list) or not all(isinstance(p, str) and p for p in lists):
        raise ConfigError(f"governance.sensitive.word_lists={lists!r}: use a list of word-list files")

    stage_classes = {"training": TrainingConfig, "privacy": PrivacyConfig, "artifacts": ArtifactsConfig,
                     "serving": ServingConfig, "security": SecurityConfig, "ops": OpsConfig}
    stages = {name: section(raw, name) for name in STAGE_SECTIONS}
    # The privacy section has no budget of its own (a domain's comes from its seed or its block): its keys are
    # checked here and its values through every domain's effective PrivacyConfig.
    check_keys(PrivacyConfig, "privacy", stages["privacy"])
    # Environment values typed like the file's, so a merge with a domain block sees numbers, not text.
    stages = {name: coerce(stage_classes[name], values, section=name) for name, values in stages.items()}
    return PipelineConfig(
        storage=_build(StorageConfig, "storage", section(raw, "storage")),
        ingest=_build(IngestConfig, "ingest", ingest_raw, sources=sources),
        dedup=_build(DedupConfig, "dedup", section(raw, "dedup")),
        validation=_build(ValidationConfig, "validation", validation_raw),
        feedback=_build(FeedbackConfig, "feedback", section(raw, "feedback")),
        alerts=_build(AlertsConfig, "alerts", alerts_raw),
        domains=domains,
        governance=_build(GovernanceConfig, "governance", governance_raw),
        training=_build(TrainingConfig, "training", stages["training"]),
        artifacts=_build(ArtifactsConfig, "artifacts", stages["artifacts"]),
        serving=_build(ServingConfig, "serving", stages["serving"]),
        security=_build(SecurityConfig, "security", stages["security"]),
        ops=_build(OpsConfig, "ops", stages["ops"]),
        source_path=config_path,
        _stage_values={name: stages[name] for name in ("training", "privacy")},
    )
