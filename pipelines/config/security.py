"""The ``security`` section: encryption at rest, key age, audit retention, model approvers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.config.base import PROJECT_ROOT, ConfigError

# Audit entries must outlive the longest dispute/inspection window we answer for; shorter is refused.
MIN_AUDIT_RETENTION_DAYS = 180


def _prefix_ok(value: str) -> bool:
    return bool(value) and not value.startswith("/") and ".." not in value.split("/")


@dataclass(frozen=True)
class SecurityConfig:
    """How objects are encrypted at rest and how long audit entries are kept.

    Attributes:
        enabled: wrap the object store with ``EncryptedObjectStore`` (``wrap_store``); off keeps plaintext.
        keyring_path: the KEK keyring file (JSON, mode 0600), relative to the project root unless absolute.
            Never inside the repository's tracked files; ``PIPELINE_KEK_<ID>`` variables add keys to it.
        encrypt_prefixes: objects under these prefixes are encrypted; everything else passes through.
        partition_key_prefixes: objects under these prefixes are encrypted with a per-partition key
            (``<prefix><domain>/<interval>/``), so destroying that key shreds the partition.
        keys_prefix: where the wrapped partition keys live (must not be encrypted itself).
        kek_max_age_days: alert when the active KEK is older than this.
        audit_prefix: the append-only audit log's prefix.
        audit_retention_days: audit entries younger than this are never pruned (>= 180).
        allow_plaintext_reads: return unencrypted objects found under an encrypted prefix as they are
            (a migration window); off, reading one raises ``NotEncrypted``.
    """

    enabled: bool = False
    keyring_path: str = ".local/keys/keyring.json"
    encrypt_prefixes: tuple[str, ...] = ("curated/", "models/")
    partition_key_prefixes: tuple[str, ...] = ("curated/",)
    keys_prefix: str = "keys"
    kek_max_age_days: int = 90
    audit_prefix: str = "audit"
    audit_retention_days: int = 180
    allow_plaintext_reads: bool = False
    # Who may promote or roll back a model by hand (pipelines.access; names or shell-style patterns).
    model_approvers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("encrypt_prefixes", "partition_key_prefixes"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ConfigError(f"security.{name}={value!r}: use a list of prefixes ending with '/'")
            object.__setattr__(self, name, tuple(value))
            for prefix in getattr(self, name):
                if not isinstance(prefix, str) or not _prefix_ok(prefix) or not prefix.endswith("/"):
                    raise ConfigError(f"security.{name}: {prefix!r} must be a relative prefix ending with '/'")
        for prefix in self.partition_key_prefixes:
            if not any(prefix.startswith(p) for p in self.encrypt_prefixes):
                raise ConfigError(f"security.partition_key_prefixes: {prefix!r} is not under any of "
                                  f"security.encrypt_prefixes {list(self.encrypt_prefixes)}; add it there")
        for name in ("keys_prefix", "audit_prefix"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _prefix_ok(value) or value.endswith("/"):
                raise ConfigError(f"security.{name}={value!r} must be a non-empty prefix without leading/trailing '/'")
            if any(f"{value}/".startswith(p) or p.startswith(f"{value}/") for p in self.encrypt_prefixes):
                raise ConfigError(f"security.{name}={value!r} overlaps security.encrypt_prefixes: "
                                  "wrapped keys and the audit log must stay readable without the data keys")
        if not isinstance(self.kek_max_age_days, int) or self.kek_max_age_days < 1:
            raise ConfigError(f"security.kek_max_age_days={self.kek_max_age_days!r}: use a positive number of days")
        if not isinstance(self.audit_retention_days, int) or self.audit_retention_days < MIN_AUDIT_RETENTION_DAYS:
            raise ConfigError(f"security.audit_retention_days={self.audit_retention_days!r}: "
                              f"use at least {MIN_AUDIT_RETENTION_DAYS} days")
        for name in ("enabled", "allow_plaintext_reads"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"security.{name}={getattr(self, name)!r}: use true or false")
        if not isinstance(self.keyring_path, (str, Path)) or not str(self.keyring_path):
            raise ConfigError("security.keyring_path is empty: name the keyring file, e.g. .local/keys/keyring.json")

    @property
    def keyring_file(self) -> Path:
        """The keyring path, resolved against the project root."""
        path = Path(self.keyring_path).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path
