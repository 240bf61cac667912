"""KEK rotation (re-wrap or full re-encryption) and the key-age alert."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pipelines.config import AlertsConfig
from pipelines.security.envelope import (
    MODE_KEK, MODE_PARTITION, EncryptedObjectStore, is_encrypted, parse_header,
)
from pipelines.security.keyring import Keyring, utcnow

log = logging.getLogger("pipelines.security")


@dataclass
class RotationResult:
    """What a rotation did.

    Attributes:
        new_kek_id: the KEK now active.
        old_kek_ids: the KEKs that were in the keyring before.
        partition_keys_rewrapped: stored partition keys re-wrapped with the new KEK.
        objects_rewrapped: KEK-wrapped objects whose data key was re-wrapped (ciphertext unchanged).
        objects_reencrypted: objects re-encrypted with a fresh data key (``full``).
        plaintext_encrypted: plaintext objects under encrypted prefixes that ``full`` encrypted.
        plaintext_left: plaintext objects left as they are (run with ``full`` to encrypt them).
        retired: KEKs destroyed after the rotation (``retire_old``).
        errors: objects that could not be processed (nothing is retired when there is one).
    """

    new_kek_id: str
    old_kek_ids: list[str]
    partition_keys_rewrapped: int = 0
    objects_rewrapped: int = 0
    objects_reencrypted: int = 0
    plaintext_encrypted: int = 0
    plaintext_left: int = 0
    retired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def rotate_kek(store: EncryptedObjectStore, *, full: bool = False, retire_old: bool = False,
               now: dt.datetime | None = None, audit: Callable[[dict], object] | None = None,
               who: str = "security", why: str = "scheduled KEK rotation") -> RotationResult:
    """Add a new active KEK and move every wrapped key onto it.

    Without ``full`` only small wrapped keys change: the partition key records and the headers of
    KEK-wrapped objects (one GET and one PUT of the object, ciphertext unchanged). With ``full`` every
    object gets a fresh data key and nonce, each partition a fresh partition key (the old one is
    deleted afterwards), and plaintext objects under encrypted prefixes are encrypted.

    Run it when no stage writes (it rewrites objects in place; a concurrent writer's new bytes at the
    same key could be replaced by the rewritten old ones). Re-running after a failure is safe.

    Args:
        store: the encrypted store (its keyring gains the new KEK and is saved).
        full: re-encrypt everything instead of re-wrapping.
        retire_old: destroy the old KEKs afterwards (skipped when any object failed).
        now: the creation time of the new KEK (default: now).
        audit: called with an audit entry (``pipelines.security.audit.audit_hook(store)``).
        who: recorded in the audit entry.
        why: recorded in the audit entry.

    Returns:
        Counts of what changed.
    """
    ring = store.keyring
    old_ids = [k for k in ring.ids if k != ring.active_id] + [ring.active_id]
    new = ring.add_key(now=now)
    result = RotationResult(new_kek_id=new.kek_id, old_kek_ids=old_ids)
    inner = store.inner

    # Partition keys first: objects wrapped by them become readable under the new KEK at once.
    new_partition_keys: dict[str, tuple[str, bytes]] = {}
    old_partition_records: list[str] = []
    pk_root = f"{store.keys_prefix}/partitions/"
    for info in list(inner.list(pk_root)):
        if not info.key.endswith(".json"):
            continue
        try:
            if full:
                old_partition_records.append(info.key)
            elif store.rewrap_partition_key(info.key):
                result.partition_keys_rewrapped += 1
        except Exception as exc:  # noqa: BLE001 - report every failure, retire nothing
            result.errors.append(f"{info.key}: {exc}")

    for prefix in store.prefixes:
        for info in list(inner.list(prefix)):
            key = info.key
            try:
                stored = inner.get(key)
                if not is_encrypted(stored):
                    if full:
                        inner.put(key, _encrypt(store, key, stored, new_partition_keys))
                        result.plaintext_encrypted += 1
                    else:
                        result.plaintext_left += 1
                    continue
                if full:
                    plain = store.decrypt(key, stored)
                    inner.put(key, _encrypt(store, key, plain, new_partition_keys))
                    result.objects_reencrypted += 1
                    continue
                header = parse_header(stored, key)
                if header.mode == MODE_KEK:
                    rewrapped = store.rewrap(key, stored)
                    if rewrapped is not None:
                        inner.put(key, rewrapped)
                        result.objects_rewrapped += 1
                elif header.mode != MODE_PARTITION:  # pragma: no cover - parse_header refuses others
                    result.errors.append(f"{key}: unknown envelope mode {header.mode}")
            except Exception as exc:  # noqa: BLE001 - report every failure, retire nothing
                result.errors.append(f"{key}: {exc}")

    if full and not result.errors:
        fresh = {f"{pk_root}{scope}/{key_id}.json" for scope, (key_id, _) in new_partition_keys.items()}
        for record_key in old_partition_records:
            if record_key not in fresh:
                inner.delete(record_key)
        result.partition_keys_rewrapped = len(new_partition_keys)
    if retire_old:
        if result.errors:
            log.error("rotation had %d error(s): old KEKs kept", len(result.errors))
        else:
            for kek_id in old_ids:
                if ring.get(kek_id).source == "env":
                    result.errors.append(f"KEK {kek_id!r} comes from the environment: unset PIPELINE_KEK_{kek_id.upper()}")
                    continue
                ring.retire(kek_id, now=now)
                result.retired.append(kek_id)
    if audit is not None:
        audit({"action": "key_rotation", "who": who, "why": why, "what": f"KEK {new.kek_id}",
               "details": {k: v for k, v in result.to_dict().items() if k != "errors"} | {"errors": len(result.errors),
                                                                                           "full": full}})
    return result


def _encrypt(store: EncryptedObjectStore, key: str, plain: bytes, fresh: dict[str, tuple[str, bytes]]) -> bytes:
    scope = store.partition_scope(key)
    if scope is None:
        return store.encrypt(key, plain)
    if scope not in fresh:
        fresh[scope] = store.current_partition_key(scope, new=True)
    return store.encrypt(key, plain, new_partition_key=fresh[scope])


@dataclass(frozen=True)
class KekAge:
    """The active KEK's age against the limit, and whether an alert went out."""

    kek_id: str
    age_days: float
    max_age_days: int
    too_old: bool
    alerted: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_kek_age(keyring: Keyring, *, max_age_days: int = 90, alerts: AlertsConfig | None = None,
                  now: dt.datetime | None = None, send: Callable[..., object] | None = None) -> KekAge:
    """Alert (``pipelines.alerts.send_alert``) when the active KEK is older than ``max_age_days``.

    Args:
        keyring: the keyring.
        max_age_days: the limit (``security.kek_max_age_days``).
        alerts: the alert channels (``config.alerts``); None logs only.
        now: the time to measure against (default: now).
        send: the sender (default ``send_alert``; tests pass a recorder).
    """
    if send is None:
        from pipelines.alerts import send_alert as send
    kek = keyring.active
    age = kek.age_days(now or utcnow())
    too_old = age > max_age_days
    if too_old:
        send(alerts or AlertsConfig(), title=f"KEK {kek.kek_id} is {age:.0f} days old",
             text=f"The active key-encryption key {kek.kek_id} was created {kek.created_at:%Y-%m-%d} "
                  f"({age:.0f} days ago; limit {max_age_days}). Rotate it: "
                  "`python -m pipelines security rotate-kek`, then retire the old key with --retire-old.")
    return KekAge(kek_id=kek.kek_id, age_days=round(age, 2), max_age_days=max_age_days, too_old=too_old,
                  alerted=too_old)
