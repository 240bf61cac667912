"""Key-encryption keys (KEKs): a keyring kept outside the repository and the object store.

The keyring is a JSON file (mode 0600, refused when group/other can read it)::

    {"format": 1, "active": "k20261012a1b2",
     "keys": {"k20261012a1b2": {"key": "<base64 32 bytes>", "created_at": "2026-10-12T09:30:00Z",
                                "retired_at": null}}}

Keys can also come from the environment, for hosts that get secrets injected (Kubernetes secrets,
Airflow workers): ``PIPELINE_KEK_<ID>=<base64 key>`` or ``<base64 key>@<YYYY-MM-DD created>``, and
``PIPELINE_KEK_ACTIVE=<id>`` picks the active one. Ids are lower-cased. Retiring a KEK destroys its
material: whatever is still wrapped with it can no longer be read, so retire only after rotation.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32  # AES-256
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_PREFIX = "PIPELINE_KEK_"


class KeyringError(RuntimeError):
    """The keyring is missing, unreadable, too open, or lacks a key; the message says what to do."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Kek:
    """One key-encryption key."""

    kek_id: str
    key: bytes
    created_at: dt.datetime
    source: str = "file"  # "file" or "env"

    def age_days(self, now: dt.datetime | None = None) -> float:
        return ((now or utcnow()) - self.created_at).total_seconds() / 86400


class Keyring:
    """KEKs by id, one of them active (new data keys are wrapped with it).

    Build one with :meth:`load` (file + environment) or :meth:`create` (a new file with one key).
    Changes (:meth:`add_key`, :meth:`retire`) are written back to the file atomically, mode 0600.
    """

    def __init__(self, *, keys: Mapping[str, Kek], active: str, path: Path | None = None,
                 retired: Mapping[str, str] | None = None) -> None:
        if active not in keys:
            raise KeyringError(f"active KEK {active!r} is not in the keyring (known: {sorted(keys) or 'none'})")
        self._keys = dict(keys)
        self.active_id = active
        self.path = path
        self._retired = dict(retired or {})

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def create(cls, path: str | Path, *, now: dt.datetime | None = None) -> Keyring:
        """Write a new keyring file holding one fresh KEK; refuses to overwrite an existing one."""
        path = Path(path)
        if path.exists():
            raise KeyringError(f"{path} already exists; rotate with `python -m pipelines security rotate-kek` "
                               "instead of creating a new keyring (that would orphan every wrapped key)")
        kek = _new_kek(now)
        ring = cls(keys={kek.kek_id: kek}, active=kek.kek_id, path=path)
        ring.save()
        return ring

    @classmethod
    def load(cls, path: str | Path | None, *, environ: Mapping[str, str] | None = None) -> Keyring:
        """Read the keyring file (if ``path`` exists) plus ``PIPELINE_KEK_<ID>`` keys from the environment.

        Raises:
            KeyringError: no key anywhere, the file is readable by group/other, or malformed.
        """
        environ = os.environ if environ is None else environ
        keys: dict[str, Kek] = {}
        retired: dict[str, str] = {}
        active = None
        file = Path(path) if path else None
        if file is not None and file.exists():
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                raise KeyringError(f"{file} is readable by group/other (mode {mode:o}); run: chmod 600 {file}")
            try:
                raw = json.loads(file.read_text(encoding="utf-8"))
                for kek_id, entry in raw["keys"].items():
                    keys[kek_id] = Kek(kek_id, _decode_key(entry["key"], kek_id), _parse_time(entry["created_at"]))
                retired = dict(raw.get("retired") or {})
                active = raw["active"]
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyringError(f"{file} is not a valid keyring ({type(exc).__name__}: {exc})") from None
        for name, value in environ.items():
            if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}ACTIVE":
                continue
            kek_id = name[len(ENV_PREFIX):].lower()
            if not _ID.match(kek_id):
                raise KeyringError(f"{name}: the id {kek_id!r} must match {_ID.pattern} (after lower-casing)")
            encoded, _, created = value.partition("@")
            try:
                created_at = _parse_time(created) if created else dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
            except ValueError:
                raise KeyringError(f"{name}: created date {created!r} is not ISO-8601 (use <base64>@YYYY-MM-DD)") from None
            keys[kek_id] = Kek(kek_id, _decode_key(encoded, name), created_at, source="env")
        active = environ.get(f"{ENV_PREFIX}ACTIVE", "").lower() or active
        if active is None and len(keys) == 1:
            active = next(iter(keys))
        if not keys:
            raise KeyringError(f"no key-encryption key: create the keyring with `python -m pipelines security "
                               f"init-keyring` (writes {file}) or set {ENV_PREFIX}<ID>")
        if active is None:
            raise KeyringError(f"several KEKs in the environment and no active one: set {ENV_PREFIX}ACTIVE")
        return cls(keys=keys, active=active, path=file, retired=retired)

    def save(self) -> None:
        """Write the file-held keys back (atomically, 0600). Environment keys are never written."""
        if self.path is None:
            raise KeyringError("this keyring has no file; pass a keyring_path to change it")
        body = {"format": 1, "active": self.active_id, "retired": self._retired,
                "keys": {k.kek_id: {"key": base64.b64encode(k.key).decode(), "created_at": _iso(k.created_at)}
                         for k in self._keys.values() if k.source == "file"}}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()

    # ------------------------------------------------------------------ use
    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    @property
    def active(self) -> Kek:
        return self._keys[self.active_id]

    def get(self, kek_id: str) -> Kek:
        """The KEK ``kek_id``, or ``KeyringError`` saying whether it was retired or never known."""
        try:
            return self._keys[kek_id]
        except KeyError:
            if kek_id in self._retired:
                raise KeyringError(f"KEK {kek_id!r} was retired on {self._retired[kek_id]}; data still wrapped "
                                   "with it cannot be read (was rotation finished before retiring?)") from None
            raise KeyringError(f"KEK {kek_id!r} is not in the keyring {self.path or '(environment)'}; "
                               f"known: {self.ids}. Restore the keyring or set {ENV_PREFIX}{kek_id.upper()}") from None

    def add_key(self, *, now: dt.datetime | None = None, activate: bool = True) -> Kek:
        """Add a fresh KEK (active by default) and save the file."""
        kek = _new_kek(now)
        while kek.kek_id in self._keys:
            kek = _new_kek(now)
        self._keys[kek.kek_id] = kek
        if activate:
            self.active_id = kek.kek_id
        self.save()
        return kek

    def retire(self, kek_id: str, *, now: dt.datetime | None = None) -> None:
        """Destroy a KEK's material (it stays listed as retired). The active key cannot be retired."""
        if kek_id == self.active_id:
            raise KeyringError(f"KEK {kek_id!r} is active; rotate first (rotate-kek), then retire the old one")
        kek = self.get(kek_id)
        if kek.source == "env":
            raise KeyringError(f"KEK {kek_id!r} comes from {ENV_PREFIX}{kek_id.upper()}; remove that variable")
        del self._keys[kek_id]
        self._retired[kek_id] = _iso(now or utcnow())
        self.save()


def _new_kek(now: dt.datetime | None) -> Kek:
    moment = now or utcnow()
    kek_id = f"k{moment.strftime('%Y%m%d')}{secrets.token_hex(3)}"
    return Kek(kek_id, secrets.token_bytes(KEY_BYTES), moment.replace(microsecond=0))


def _decode_key(encoded: str, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        raise KeyringError(f"{where}: the key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{where}: the key is {len(key)} bytes; AES-256 needs {KEY_BYTES} "
                           "(generate one: python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')")
    return key
