"""Envelope encryption, rotation, key age and crypto-shredding on a local folder store."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat

import pytest

from pipelines.config import AlertsConfig, ConfigError, build_stage_config
from pipelines.config.security import SecurityConfig
from pipelines.security.envelope import (
    DecryptionError, EncryptedObjectStore, KeyShredded, NotEncrypted, parse_header, shred_partition, wrap_store,
)
from pipelines.security.keyring import Keyring, KeyringError
from pipelines.security.rotation import check_kek_age, rotate_kek
from pipelines.storage import LocalObjectStore

NOW = dt.datetime(2026, 10, 12, 9, 30, tzinfo=dt.timezone.utc)
PART = "curated/legal/2026-10-04_2026-10-11"


@pytest.fixture
def raw(tmp_path):
    return LocalObjectStore(tmp_path / "bucket")


@pytest.fixture
def ring(tmp_path):
    return Keyring.create(tmp_path / "keys" / "keyring.json", now=NOW)


@pytest.fixture
def enc(raw, ring):
    return EncryptedObjectStore(raw, ring)


def test_keyring_file_is_0600_and_refused_when_open(tmp_path, ring):
    path = tmp_path / "keys" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(path, environ={}).active_id == ring.active_id
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring.load(path, environ={})
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.create(path)


def test_keyring_from_environment(tmp_path):
    key = base64.b64encode(bytes(range(32))).decode()
    ring = Keyring.load(tmp_path / "absent.json", environ={"PIPELINE_KEK_PROD1": f"{key}@2026-01-01"})
    assert ring.active_id == "prod1" and ring.active.key == bytes(range(32))
    assert ring.active.created_at == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(KeyringError, match="init-keyring"):
        Keyring.load(tmp_path / "absent.json", environ={})
    with pytest.raises(KeyringError, match="AES-256 needs 32"):
        Keyring.load(None, environ={"PIPELINE_KEK_X": base64.b64encode(b"short").decode()})


def test_roundtrip_encrypts_only_configured_prefixes(raw, enc):
    secret = "合同 contract 13800138000".encode()
    assert enc.put(f"{PART}/v-1/data.parquet", secret) is True
    assert enc.put("models/legal/artifacts/a/model.safetensors", secret) is True
    assert enc.put("landing/legal/2026-10-05/a.jsonl", secret) is True
    for key in (f"{PART}/v-1/data.parquet", "models/legal/artifacts/a/model.safetensors"):
        stored = raw.get(key)
        assert secret not in stored and enc.get(key) == secret
    assert raw.get("landing/legal/2026-10-05/a.jsonl") == secret  # passed through
    assert parse_header(raw.get(f"{PART}/v-1/data.parquet")).scope == PART
    assert parse_header(raw.get("models/legal/artifacts/a/model.safetensors")).kek_id == enc.keyring.active_id
    # create-only semantics survive the wrapper
    assert enc.put(f"{PART}/_commits/00000001.json", b"{}", if_none_match=True) is True
    assert enc.put(f"{PART}/_commits/00000001.json", b"{}", if_none_match=True) is False
    # same plaintext, different ciphertext (fresh data key and nonce)
    enc.put("models/x/a.bin", b"same")
    first = raw.get("models/x/a.bin")
    enc.put("models/x/a.bin", b"same")
    assert raw.get("models/x/a.bin") != first


def test_tampering_and_moving_are_detected(raw, enc):
    enc.put("models/x/a.bin", b"payload")
    stored = bytearray(raw.get("models/x/a.bin"))
    stored[-1] ^= 1
    raw.put("models/x/a.bin", bytes(stored))
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.get("models/x/a.bin")
    enc.put("models/x/b.bin", b"payload")
    raw.put("models/x/c.bin", raw.get("models/x/b.bin"))  # ciphertext copied to another key
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.get("models/x/c.bin")


def test_plaintext_under_encrypted_prefix_is_refused_unless_allowed(raw, ring):
    raw.put("models/x/old.bin", b"plain")
    with pytest.raises(NotEncrypted, match="rotate-kek --full"):
        EncryptedObjectStore(raw, ring).get("models/x/old.bin")
    assert EncryptedObjectStore(raw, ring, allow_plaintext_reads=True).get("models/x/old.bin") == b"plain"


def test_rotation_then_retiring_old_kek_keeps_everything_readable(tmp_path, raw, ring, enc):
    objects = {f"{PART}/v-1/data.parquet": b"rows", f"{PART}/_commits/00000001.json": b'{"n": 1}',
               "models/legal/artifacts/a/model.safetensors": b"weights", "models/base/b/manifest.json": b"{}"}
    for key, value in objects.items():
        enc.put(key, value)
    old = ring.active_id
    before = raw.get(f"{PART}/v-1/data.parquet")
    result = rotate_kek(enc, retire_old=True, now=NOW + dt.timedelta(days=91))
    assert result.errors == [] and result.retired == [old]
    assert (result.partition_keys_rewrapped, result.objects_rewrapped, result.objects_reencrypted) == (1, 2, 0)
    assert raw.get(f"{PART}/v-1/data.parquet") == before  # partition objects untouched: only their key re-wrapped
    reloaded = Keyring.load(tmp_path / "keys" / "keyring.json", environ={})
    assert reloaded.ids == [result.new_kek_id] and reloaded.active_id == result.new_kek_id
    fresh = EncryptedObjectStore(raw, reloaded)
    assert {k: fresh.get(k) for k in objects} == objects
    with pytest.raises(KeyringError, match="retired"):
        reloaded.get(old)


def test_full_reencryption_changes_every_data_key(raw, ring, enc):
    enc.put(f"{PART}/v-1/data.parquet", b"rows")
    enc.put("models/x/a.bin", b"weights")
    raw.put("models/x/legacy.bin", b"legacy plaintext")
    old_pk = enc.partition_keys(PART)
    before = {k: raw.get(k) for k in (f"{PART}/v-1/data.parquet", "models/x/a.bin")}
    result = rotate_kek(enc, full=True, retire_old=True)
    assert (result.objects_reencrypted, result.plaintext_encrypted, result.errors) == (2, 1, [])
    assert all(raw.get(k) != v for k, v in before.items())
    assert len(enc.partition_keys(PART)) == 1 and enc.partition_keys(PART) != old_pk
    assert enc.get(f"{PART}/v-1/data.parquet") == b"rows" and enc.get("models/x/legacy.bin") == b"legacy plaintext"


def test_rotation_keeps_old_kek_when_something_failed(raw, ring, enc):
    enc.put("models/x/a.bin", b"ok")
    raw.put("models/x/bad.bin", b"\x00MLENC\x01\x09garbage")  # unknown mode
    old = ring.active_id
    result = rotate_kek(enc, retire_old=True)
    assert result.retired == [] and old in ring.ids
    assert [e.split(":")[0] for e in result.errors] == ["models/x/bad.bin"]


def test_key_age_alert(ring):
    sent = []

    def send(config, *, title, text):
        sent.append((title, text))

    young = check_kek_age(ring, max_age_days=90, alerts=AlertsConfig(), now=NOW + dt.timedelta(days=90), send=send)
    assert (young.too_old, young.alerted, sent) == (False, False, [])
    old = check_kek_age(ring, max_age_days=90, alerts=AlertsConfig(), now=NOW + dt.timedelta(days=91), send=send)
    assert (old.too_old, old.alerted, old.age_days) == (True, True, 91.0)
    assert sent == [(f"KEK {ring.active_id} is 91 days old", sent[0][1])] and "rotate-kek" in sent[0][1]


def test_crypto_shredding_makes_a_partition_unreadable(raw, enc):
    other = "curated/legal/2026-10-11_2026-10-18"
    enc.put(f"{PART}/v-1/data.parquet", b"rows of week 1")
    enc.put(f"{PART}/_commits/00000001.json", b'{"n": 1}')
    enc.put(f"{other}/v-1/data.parquet", b"rows of week 2")
    tomb = shred_partition(enc, scope=PART, who="alice", why="erasure request 42", now=NOW)
    assert tomb["key_ids"] and enc.partition_keys(PART) == []
    for key in (f"{PART}/v-1/data.parquet", f"{PART}/_commits/00000001.json"):
        with pytest.raises(KeyShredded, match="crypto-shredded on 2026-10-12T09:30:00\\+00:00 by alice"):
            enc.get(key)
    assert enc.get(f"{other}/v-1/data.parquet") == b"rows of week 2"
    # A missing key that was not shredded says so differently.
    enc.put("curated/legal/2026-10-18_2026-10-25/v-1/data.parquet", b"x")
    scope = "curated/legal/2026-10-18_2026-10-25"
    raw.delete(f"keys/partitions/{scope}/{enc.partition_keys(scope)[0]}.json")
    with pytest.raises(DecryptionError, match="not shredded"):
        enc.get(f"{scope}/v-1/data.parquet")
    with pytest.raises(ValueError, match="not a partition scope"):
        shred_partition(enc, scope="curated/legal", who="a", why="b")


def test_wrap_store_and_config(tmp_path, raw, ring):
    assert wrap_store(raw, SecurityConfig()) is raw  # disabled by default
    cfg = build_stage_config(SecurityConfig, "security",
                             {"enabled": True, "keyring_path": str(tmp_path / "keys" / "keyring.json")})
    wrapped = wrap_store(raw, cfg)
    assert isinstance(wrapped, EncryptedObjectStore) and wrapped.prefixes == ("curated/", "models/")
    with pytest.raises(ConfigError, match="audit_retention_days=30"):
        SecurityConfig(audit_retention_days=30)
    with pytest.raises(ConfigError, match="overlaps"):
        SecurityConfig(encrypt_prefixes=("curated/", "keys/"))
    with pytest.raises(ConfigError, match="unknown key"):
        build_stage_config(SecurityConfig, "security", {"kek_max_age": 3})
    with pytest.raises(KeyringError, match="init-keyring"):
        wrap_store(raw, SecurityConfig(enabled=True, keyring_path=str(tmp_path / "none.json")))


def test_no_key_material_in_store(raw, ring, enc):
    enc.put(f"{PART}/v-1/data.parquet", b"rows")
    blob = b"".join(raw.get(o.key) for o in raw.list(""))
    assert ring.active.key not in blob and base64.b64encode(ring.active.key) not in blob
    record = json.loads(raw.get(next(o.key for o in raw.list("keys/partitions/"))))
    assert set(record) == {"format", "scope", "key_id", "kek_id", "wrapped", "created_at"}


def test_weekly_flow_runs_on_the_encrypted_store(tmp_path, monkeypatch, raw, enc):
    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.publish import read_committed_rows
    from pipelines.weekly import PartitionRef, process_partition

    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    week = Interval.parse("2026-10-04_2026-10-11")
    enc.put("landing/legal/2026-10-05/a.jsonl", b'{"id": "e1", "text": "Quillon Farraday leased the barn."}\n')
    assert process_partition(config=config, store=enc, part=PartitionRef(domain="legal", interval=week))["published"]
    _commit, rows = read_committed_rows(enc, f"curated/legal/{week.name}")
    assert [r["id"] for r in rows] == ["e1"]
    curated = [o.key for o in raw.list("curated/")]
    assert len(curated) == 4 and all(raw.get(k).startswith(b"\x00MLENC") for k in curated)
    shred_partition(enc, scope=f"curated/legal/{week.name}", who="dpo", why="test")
    with pytest.raises(KeyShredded):
        read_committed_rows(enc, f"curated/legal/{week.name}")
