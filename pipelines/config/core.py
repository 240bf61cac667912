"""The core sections: storage, ingest, dedup, validation, feedback, alerts, governance and domains."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.base import ConfigError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TASKS = ("classification", "causal_lm")
LANGUAGES = ("zh", "en", "other")


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
    """What the ingest step reads and how it decodes it, and how the weekly steps move a partition.

    ``batch_rows``: records a step holds at a time (every step streams its partition in batches of this
    many rows, and the curated Parquet has row groups of this size). ``max_object_bytes``: a curated
    data file larger than this is split into several part files under one commit. ``shard_records``: a
    week with more parsed records than this is split into shards of at most this many (by landing file,
    then by row range) whose per-record steps run as separate tasks on any worker (``pipelines.weekly.
    shards``); 0 never shards. ``shard_bytes``: the landing files of a week are parsed in groups of at most
    this many bytes (a larger file is a group of its own), one task each on any worker; a group's records
    are then cut by ``shard_records``, so a week of more than one group is sharded; 0: one group.
    """

    sources: tuple[SourceConfig, ...]
    encodings: tuple[str, ...] = ("utf-8", "gb18030")
    max_file_bytes: int = 512 * 1024 * 1024
    batch_rows: int = 4096
    max_object_bytes: int = 1024 * 1024 * 1024
    shard_records: int = 250_000
    shard_bytes: int = 1024 * 1024 * 1024

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
        if isinstance(self.batch_rows, bool) or not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            raise ConfigError(f"ingest.batch_rows={self.batch_rows!r}: use an integer >= 1")
        if isinstance(self.max_object_bytes, bool) or not isinstance(self.max_object_bytes, int) \
                or self.max_object_bytes < 64 * 1024:
            raise ConfigError(f"ingest.max_object_bytes={self.max_object_bytes!r}: use an integer >= 65536 (64 KiB)")
        if isinstance(self.shard_records, bool) or not isinstance(self.shard_records, int) or self.shard_records < 0:
            raise ConfigError(f"ingest.shard_records={self.shard_records!r}: use an integer >= 1, or 0 to never "
                              "shard a week")
        if isinstance(self.shard_bytes, bool) or not isinstance(self.shard_bytes, int) or self.shard_bytes < 0:
            raise ConfigError(f"ingest.shard_bytes={self.shard_bytes!r}: use an integer >= 1, or 0 to parse a week's "
                              "landing files in one task")


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
    """The Great Expectations suite applied to every curated batch, and the smallest batch that may
    be published.

    ``min_records``: a partition with input whose records that passed governance (kept + duplicates)
    number fewer than this fails validation and alerts, instead of publishing an empty or nearly empty
    version (a week where every record was quarantined). 0 turns the check off.
    """

    suite: Path
    min_records: int = 1

    def __post_init__(self) -> None:
        if not self.suite.is_file():
            raise ConfigError(f"validation.suite: {self.suite} does not exist")
        if isinstance(self.min_records, bool) or not isinstance(self.min_records, int) or self.min_records < 0:
            raise ConfigError(f"validation.min_records={self.min_records!r}: use an integer >= 0")


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

    ``clean``, ``pii`` and ``sensitive`` are the YAML as written (validated by each stage's own config class
    when a domain's effective rules are built, see ``pipelines.governance``); ``label`` is validated when the
    file loads (``LabelConfig``; typed per domain as ``config.for_domain(d).label``). A domain's
    ``governance`` block overrides keys of these defaults.
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
    # The blocks as written, validated when the file loads; config.for_domain(name) holds them typed and merged
    # with the section defaults (read that, not these).
    training: Mapping[str, Any] = field(default_factory=dict)
    privacy: Mapping[str, Any] = field(default_factory=dict)
    # A code domain's block (pipelines.code.config.CodeConfig, validated when the file loads); None: not code.
    code: Mapping[str, Any] | None = None

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
