"""Client-side envelope encryption (AES-256-GCM) as an ``ObjectStore`` wrapper.

Every object under an encrypted prefix gets a fresh 256-bit data key (DEK) and a fresh nonce; the
DEK is wrapped (AES-GCM as well) either by the active KEK of the keyring, or by a per-partition key
(``curated/<domain>/<interval>/``) that is itself wrapped by the KEK and stored apart under
``<keys_prefix>/partitions/<scope>/<key_id>.json``. Destroying a partition key makes every object
of that partition unreadable (crypto-shredding) without touching the objects.

Object layout (big-endian)::

    MAGIC (6) | version (1) | mode (1: KEK-wrapped, 2: partition-key-wrapped)
    | u16 len + ref (KEK id, or "<scope>#<key_id>") | u16 len + wrapped DEK (nonce 12 + 32 + tag 16)
    | nonce (12) | ciphertext + tag (16)

The data's associated data is ``MAGIC + version + object key``: a ciphertext moved to another key
fails to decrypt, while re-wrapping the DEK (rotation) rewrites only the header. The wrapped DEK's
associated data is the object key as well, so wrapped keys cannot be swapped between objects.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.config.security import SecurityConfig
from pipelines.security.keyring import Keyring, KeyringError, utcnow
from pipelines.store_protocol import NotFound, ObjectInfo, ObjectStore

MAGIC = b"\x00MLENC"
VERSION = 1
MODE_KEK = 1
MODE_PARTITION = 2
NONCE = 12
DEK_BYTES = 32
PARTITION_DEPTH = 3  # curated/<domain>/<interval>


class DecryptionError(RuntimeError):
    """An encrypted object cannot be read; the message says why and what to do."""


class KeyShredded(DecryptionError):
    """The partition key of the object was destroyed on purpose: the data is gone for good."""


class NotEncrypted(DecryptionError):
    """A plaintext object sits under an encrypted prefix (written before encryption was enabled)."""


@dataclass(frozen=True)
class Header:
    """The parsed envelope header of an object."""

    mode: int
    ref: str
    wrapped: bytes
    nonce: bytes
    body_offset: int

    @property
    def kek_id(self) -> str | None:
        return self.ref if self.mode == MODE_KEK else None

    @property
    def scope(self) -> str | None:
        return self.ref.split("#", 1)[0] if self.mode == MODE_PARTITION else None


def is_encrypted(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def parse_header(data: bytes, key: str = "") -> Header:
    """Parse an object's envelope header (``DecryptionError`` if it is truncated or unknown)."""
    try:
        if not is_encrypted(data):
            raise NotEncrypted(f"{key}: not an encrypted object (no envelope header)")
        pos = len(MAGIC)
        version, mode = data[pos], data[pos + 1]
        if version != VERSION or mode not in (MODE_KEK, MODE_PARTITION):
            raise DecryptionError(f"{key}: envelope version {version} mode {mode} is unknown to this code")
        pos += 2
        (ref_len,) = struct.unpack_from(">H", data, pos)
        ref = data[pos + 2:pos + 2 + ref_len].decode("utf-8")
        pos += 2 + ref_len
        (wrapped_len,) = struct.unpack_from(">H", data, pos)
        wrapped = data[pos + 2:pos + 2 + wrapped_len]
        pos += 2 + wrapped_len
        nonce = data[pos:pos + NONCE]
        if len(wrapped) != wrapped_len or len(nonce) != NONCE or len(data) < pos + NONCE + 16:
            raise DecryptionError(f"{key}: envelope header is truncated")
    except (struct.error, IndexError, UnicodeDecodeError):
        raise DecryptionError(f"{key}: envelope header is corrupt") from None
    return Header(mode=mode, ref=ref, wrapped=wrapped, nonce=nonce, body_offset=pos + NONCE)


def _header_bytes(mode: int, ref: str, wrapped: bytes, nonce: bytes) -> bytes:
    encoded = ref.encode("utf-8")
    return (MAGIC + bytes([VERSION, mode]) + struct.pack(">H", len(encoded)) + encoded
            + struct.pack(">H", len(wrapped)) + wrapped + nonce)


def _data_aad(key: str) -> bytes:
    return MAGIC + bytes([VERSION]) + key.encode("utf-8")


def _wrap(kek: bytes, secret: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, secret, aad)


def _unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    return AESGCM(kek).decrypt(wrapped[:NONCE], wrapped[NONCE:], aad)


def _dek_aad(key: str) -> bytes:
    return b"dek\x00" + key.encode("utf-8")


def _pk_aad(scope: str, key_id: str) -> bytes:
    return b"pk\x00" + scope.encode("utf-8") + b"\x00" + key_id.encode("utf-8")


class EncryptedObjectStore:
    """An ``ObjectStore`` that encrypts objects under ``prefixes`` and passes every other key through.

    Args:
        inner: the store that holds the bytes.
        keyring: KEKs; new data keys are wrapped with the active one.
        prefixes: encrypted prefixes (``curated/``, ``models/``).
        partition_prefixes: prefixes whose objects use a per-partition key (``<prefix><domain>/<interval>/``),
            so a partition can be crypto-shredded; must lie under ``prefixes``.
        keys_prefix: where wrapped partition keys live (never encrypted).
        allow_plaintext_reads: return unencrypted objects under an encrypted prefix unchanged (migration).

    Listing reports the stored (encrypted) sizes. Partition keys are not cached: every read and write
    checks that the partition key still exists, so a shred in another process takes effect at once.
    """

    def __init__(self, inner: ObjectStore, keyring: Keyring, *, prefixes: tuple[str, ...] = ("curated/", "models/"),
                 partition_prefixes: tuple[str, ...] = ("curated/",), keys_prefix: str = "keys",
                 allow_plaintext_reads: bool = False) -> None:
        self.inner = inner
        self.keyring = keyring
        self.prefixes = tuple(prefixes)
        self.partition_prefixes = tuple(partition_prefixes)
        self.keys_prefix = keys_prefix.rstrip("/")
        self.allow_plaintext_reads = allow_plaintext_reads
        for prefix in (f"{self.keys_prefix}/",):
            if self.encrypts(prefix + "x"):
                raise ValueError(f"keys_prefix {keys_prefix!r} lies under an encrypted prefix; keep it apart")

    # ------------------------------------------------------------------ which keys
    def encrypts(self, key: str) -> bool:
        """Whether objects at ``key`` are encrypted."""
        return key.startswith(self.prefixes)

    def partition_scope(self, key: str) -> str | None:
        """``curated/<domain>/<interval>`` for a key inside a partition-keyed prefix, else None."""
        if not key.startswith(self.partition_prefixes):
            return None
        parts = key.split("/")
        return "/".join(parts[:PARTITION_DEPTH]) if len(parts) > PARTITION_DEPTH else None

    def _pk_folder(self, scope: str) -> str:
        return f"{self.keys_prefix}/partitions/{scope}/"

    def _shred_folder(self, scope: str) -> str:
        return f"{self.keys_prefix}/shredded/{scope}/"

    # ------------------------------------------------------------------ partition keys
    def _read_partition_key(self, scope: str, key_id: str, *, for_key: str) -> bytes:
        record_key = f"{self._pk_folder(scope)}{key_id}.json"
        try:
            record = json.loads(self.inner.get(record_key))
        except NotFound:
            shreds = [o.key for o in self.inner.list(self._shred_folder(scope))]
            if shreds:
                info = json.loads(self.inner.get(shreds[-1]))
                raise KeyShredded(f"{for_key}: partition {scope} was crypto-shredded on {info.get('when')} by "
                                  f"{info.get('who')} ({info.get('why')}); its data cannot be recovered") from None
            raise DecryptionError(f"{for_key}: partition key {record_key} is missing (not shredded: restore it "
                                  "from the keys backup)") from None
        kek = self.keyring.get(record["kek_id"]).key
        try:
            return _unwrap(kek, base64.b64decode(record["wrapped"]), _pk_aad(scope, key_id))
        except InvalidTag:
            raise DecryptionError(f"{record_key}: wrapped partition key does not verify with KEK "
                                  f"{record['kek_id']!r} (tampered, or the keyring holds another key under that id)") from None

    def partition_keys(self, scope: str) -> list[str]:
        """Key ids of a partition's live keys, oldest first."""
        folder = self._pk_folder(scope)
        return sorted(o.key[len(folder):-5] for o in self.inner.list(folder) if o.key.endswith(".json"))

    def current_partition_key(self, scope: str, *, new: bool = False) -> tuple[str, bytes]:
        """The key id and key a partition's new objects use; created (create-only) if it has none."""
        ids = [] if new else self.partition_keys(scope)
        if ids:
            return ids[-1], self._read_partition_key(scope, ids[-1], for_key=scope)
        key_id = f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
        secret = secrets.token_bytes(DEK_BYTES)
        record = self._partition_key_record(scope, key_id, secret)
        # Create-only: two writers racing each get their own key, and both stay valid.
        self.inner.put(f"{self._pk_folder(scope)}{key_id}.json", record, if_none_match=True)
        return key_id, secret

    def _partition_key_record(self, scope: str, key_id: str, secret: bytes) -> bytes:
        kek = self.keyring.active
        return json.dumps({"format": 1, "scope": scope, "key_id": key_id, "kek_id": kek.kek_id,
                           "wrapped": base64.b64encode(_wrap(kek.key, secret, _pk_aad(scope, key_id))).decode(),
                           "created_at": utcnow().isoformat(timespec="seconds")}, sort_keys=True).encode()

    def rewrap_partition_key(self, record_key: str) -> bool:
        """Re-wrap one stored partition key with the active KEK; False if it already uses it."""
        record = json.loads(self.inner.get(record_key))
        if record["kek_id"] == self.keyring.active_id:
            return False
        secret = _unwrap(self.keyring.get(record["kek_id"]).key, base64.b64decode(record["wrapped"]),
                         _pk_aad(record["scope"], record["key_id"]))
        self.inner.put(record_key, self._partition_key_record(record["scope"], record["key_id"], secret))
        return True

    # ------------------------------------------------------------------ encrypt / decrypt
    def encrypt(self, key: str, data: bytes, *, new_partition_key: tuple[str, bytes] | None = None) -> bytes:
        """The stored bytes for ``data`` at ``key`` (a fresh DEK and nonce every call)."""
        dek = secrets.token_bytes(DEK_BYTES)
        scope = self.partition_scope(key)
        if scope is not None:
            key_id, wrapping = new_partition_key or self.current_partition_key(scope)
            mode, ref = MODE_PARTITION, f"{scope}#{key_id}"
        else:
            kek = self.keyring.active
            mode, ref, wrapping = MODE_KEK, kek.kek_id, kek.key
        nonce = secrets.token_bytes(NONCE)
        header = _header_bytes(mode, ref, _wrap(wrapping, dek, _dek_aad(key)), nonce)
        return header + AESGCM(dek).encrypt(nonce, data, _data_aad(key))

    def _wrapping_key(self, header: Header, key: str) -> bytes:
        if header.mode == MODE_KEK:
            try:
                return self.keyring.get(header.ref).key
            except KeyringError as exc:
                raise DecryptionError(f"{key}: {exc}") from None
        scope, _, key_id = header.ref.partition("#")
        return self._read_partition_key(scope, key_id, for_key=key)

    def decrypt(self, key: str, stored: bytes) -> bytes:
        """The plaintext of stored bytes read from ``key``."""
        header = parse_header(stored, key)
        wrapping = self._wrapping_key(header, key)
        try:
            dek = _unwrap(wrapping, header.wrapped, _dek_aad(key))
            return AESGCM(dek).decrypt(header.nonce, stored[header.body_offset:], _data_aad(key))
        except InvalidTag:
            raise DecryptionError(f"{key}: authentication failed (the object was modified, moved from another "
                                  "key, or its data key does not match)") from None

    def rewrap(self, key: str, stored: bytes) -> bytes | None:
        """Stored bytes with the DEK re-wrapped by the active KEK (ciphertext unchanged); None if not needed."""
        header = parse_header(stored, key)
        if header.mode != MODE_KEK or header.ref == self.keyring.active_id:
            return None
        dek = _unwrap(self._wrapping_key(header, key), header.wrapped, _dek_aad(key))
        kek = self.keyring.active
        return _header_bytes(MODE_KEK, kek.kek_id, _wrap(kek.key, dek, _dek_aad(key)), header.nonce) + \
            stored[header.body_offset:]

    # ------------------------------------------------------------------ ObjectStore protocol
    def get(self, key: str) -> bytes:
        stored = self.inner.get(key)
        if not self.encrypts(key):
            return stored
        if not is_encrypted(stored):
            if self.allow_plaintext_reads:
                return stored
            raise NotEncrypted(f"{key}: plaintext object under an encrypted prefix; encrypt existing objects "
                               "with `python -m pipelines security rotate-kek --full` (or set "
                               "security.allow_plaintext_reads while migrating)")
        return self.decrypt(key, stored)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        if self.encrypts(key):
            data = self.encrypt(key, data)
        return self.inner.put(key, data, if_none_match=if_none_match)

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after=start_after)

    def list_dirs(self, prefix: str) -> list[str]:
        return self.inner.list_dirs(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)


def wrap_store(store: ObjectStore, security_config: SecurityConfig, *, keyring: Keyring | None = None) -> ObjectStore:
    """The store every stage uses: ``store`` itself when encryption is off, else an ``EncryptedObjectStore``.

    Args:
        store: the store ``pipelines.storage.open_store`` returned.
        security_config: the ``security:`` section.
        keyring: the KEKs (default: loaded from ``security_config.keyring_file`` and the environment).

    Raises:
        KeyringError: encryption is on but no KEK can be found (the message says how to create one).
    """
    if not security_config.enabled:
        return store
    if isinstance(store, EncryptedObjectStore):
        return store
    ring = keyring or Keyring.load(security_config.keyring_file)
    return EncryptedObjectStore(store, ring, prefixes=security_config.encrypt_prefixes,
                                partition_prefixes=security_config.partition_key_prefixes,
                                keys_prefix=security_config.keys_prefix,
                                allow_plaintext_reads=security_config.allow_plaintext_reads)


def encrypted_store_for(store: ObjectStore, security_config: SecurityConfig, keyring: Keyring) -> EncryptedObjectStore:
    """An ``EncryptedObjectStore`` over ``store`` even when ``security.enabled`` is off (for maintenance)."""
    if isinstance(store, EncryptedObjectStore):
        return store
    return EncryptedObjectStore(store, keyring, prefixes=security_config.encrypt_prefixes,
                                partition_prefixes=security_config.partition_key_prefixes,
                                keys_prefix=security_config.keys_prefix,
                                allow_plaintext_reads=security_config.allow_plaintext_reads)


def shred_partition(store: EncryptedObjectStore, *, scope: str, who: str, why: str,
                    now: dt.datetime | None = None) -> dict:
    """Crypto-shred a partition: destroy its keys, leave a tombstone, return what was destroyed.

    Args:
        store: the encrypted store.
        scope: ``curated/<domain>/<interval>``.
        who: who asked (recorded in the tombstone and the audit log by the caller).
        why: the reason (e.g. an erasure request reference).
        now: the time recorded (default: now).

    Note: on a bucket with versioning, deleting leaves noncurrent versions of the wrapped key; they
    stay unreadable only once the KEK that wrapped them is retired (rotate, then retire the old KEK).
    """
    if store.partition_scope(f"{scope}/x") != scope:
        raise ValueError(f"{scope!r} is not a partition scope (<prefix><domain>/<interval>) under "
                         f"{list(store.partition_prefixes)}")
    moment = (now or utcnow()).astimezone(dt.timezone.utc)
    key_ids = store.partition_keys(scope)
    tombstone = {"scope": scope, "who": who, "why": why, "when": moment.isoformat(timespec="seconds"),
                 "key_ids": key_ids}
    # Tombstone first: a reader that misses the key then reports "shredded", not "missing".
    store.inner.put(f"{store._shred_folder(scope)}{moment.strftime('%Y%m%dT%H%M%S%fZ')}.json",
                    json.dumps(tombstone, sort_keys=True).encode(), if_none_match=True)
    for key_id in key_ids:
        store.inner.delete(f"{store._pk_folder(scope)}{key_id}.json")
    return tombstone
