"""With security.enabled, the whole path runs through envelope encryption: nothing under curated/ or models/ is
readable at rest, and ingestion, training, promotion and the serving fetch work as before."""

from __future__ import annotations

import pytest

from pipelines.artifacts import current_production, load_ref, verify_artifact
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import RunRequest, build_domain_base, run_domain
from pipelines.partition import Interval
from pipelines.security.envelope import EncryptedObjectStore
from pipelines.security.keyring import Keyring
from pipelines.storage import LocalObjectStore, open_store
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import upload_evaluation_sets

WEEK = Interval.parse("2026-10-04_2026-10-11")


@pytest.fixture
def encrypted(tmp_path, monkeypatch, tiny_training):
    keyring = tmp_path / "keys" / "keyring.json"
    Keyring.create(keyring)
    for key, value in {"PIPELINE_S3_ENDPOINT_URL": f"file://{tmp_path / 'store'}",
                       "PIPELINE__SECURITY__ENABLED": "true", "PIPELINE__SECURITY__KEYRING_PATH": str(keyring)}.items():
        monkeypatch.setenv(key, value)
    config = load_config()
    return config, open_store(config), LocalObjectStore(tmp_path / "store" / config.storage.bucket)


def test_ingest_train_promote_and_fetch_through_encryption(encrypted):
    config, store, raw = encrypted
    assert isinstance(store, EncryptedObjectStore)
    for path in sorted((PROJECT_ROOT / "data/sample/landing/legal").rglob("*")):
        if path.is_file() and WEEK.start.isoformat() <= path.parent.name < WEEK.end.isoformat():
            store.put(f"landing/legal/{path.parent.name}/{path.name}", path.read_bytes())
    assert process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))["published"]
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    upload_evaluation_sets(config, store, only=("legal",))
    result = run_domain(config=config, store=store, request=RunRequest(domain="legal", kind="weekly", run_id="enc-1"), who="test")
    assert result.promoted is True
    ref = load_ref(store, "legal", current_production(store, "legal").artifact_id)
    assert verify_artifact(store, ref)["task"] == "classification"

    # At rest: every object under curated/ and models/ is ciphertext (no Parquet or safetensors header, no text).
    sample_text = "personal social media passwords"
    at_rest = [o.key for o in raw.list("curated/")] + [o.key for o in raw.list("models/")]
    assert any(k.endswith("data.parquet") for k in at_rest) and any(k.endswith("model.safetensors") for k in at_rest)
    for key in at_rest:
        data = raw.get(key)
        assert not data.startswith(b"PAR1") and b'"__metadata__"' not in data[:200], key
        assert sample_text.encode() not in data and b"artifact_id" not in data, key
    # Through the store, the same objects read back as plaintext.
    data_key = next(k for k in at_rest if k.endswith("data.parquet"))
    assert store.get(data_key).startswith(b"PAR1")
