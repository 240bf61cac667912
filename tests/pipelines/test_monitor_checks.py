"""The daily operational checks (ops_health DAG) alert on what they should, and only that."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipelines.artifacts import build_manifest, promote, push_artifact
from pipelines.artifacts.gate import force_gate
from pipelines.config import load_config
from pipelines.monitor_checks import gpu_temperature, key_age, model_accuracy
from pipelines.security.keyring import Keyring
from pipelines.storage import LocalObjectStore


@pytest.fixture
def sent():
    calls = []
    return calls, lambda _alerts, **kw: calls.append(kw)


def test_gpu_temperature_alerts_above_85_only(sent):
    calls, send = sent
    result = gpu_temperature(config=load_config(), send=send, readings={0: 84.0, 1: 91.5})
    assert result == {"gpus": {"0": 84.0, "1": 91.5}, "alerts": 1}
    assert len(calls) == 1 and "GPU 1 is at 92 C" in calls[0]["text"]
    assert gpu_temperature(config=load_config(), send=send, readings={}) == {"gpus": {}, "alerts": 0}


def test_gpu_temperature_threshold_comes_from_ops(sent):
    calls, send = sent
    config = load_config(environ={"PIPELINE__OPS__GPU_TEMPERATURE_C": "80"})
    assert gpu_temperature(config=config, send=send, readings={0: 84.0, 1: 79.0})["alerts"] == 1
    assert len(calls) == 1 and "GPU 0 is at 84 C (limit 80 C)" in calls[0]["text"]


def test_key_age_is_skipped_while_encryption_is_off_and_alerts_when_old(tmp_path, monkeypatch, sent):
    calls, send = sent
    assert key_age(config=load_config(), send=send)["checked"] is False
    ring = tmp_path / "keyring.json"
    Keyring.create(ring, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=120))
    monkeypatch.setenv("PIPELINE__SECURITY__ENABLED", "true")
    monkeypatch.setenv("PIPELINE__SECURITY__KEYRING_PATH", str(ring))
    result = key_age(config=load_config(), send=send)
    assert result["checked"] is True and result["too_old"] is True and result["age_days"] >= 120
    assert len(calls) == 1


def test_model_accuracy_alerts_when_production_dropped_more_than_5_percent(tmp_path, sent):
    calls, send = sent
    store = LocalObjectStore(tmp_path / "store")
    for domain, accuracy in (("legal", 0.80), ("medical", 0.90)):
        folder = tmp_path / domain
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(domain.encode())
        build_manifest(folder, domain=domain, task="classification", kind="weekly", version="1.1", parent=None,
                       data=[], code_version="test", dp=None, created_by="test",
                       metrics={"accuracy": accuracy, "baseline": {"accuracy": 0.90, "artifact_id": "0" * 16}})
        ref = push_artifact(store, folder, domain=domain)
        promote(store, domain, ref, gate=force_gate(reason="test"), who="test", why="test")
    result = model_accuracy(config=load_config(), store=store, send=send)
    assert result == {"legal": {"accuracy": 0.80, "baseline": 0.90, "alerts": 1},
                      "medical": {"accuracy": 0.90, "baseline": 0.90, "alerts": 0}}
    assert len(calls) == 1 and "legal" in json.dumps(calls[0])
    calls.clear()
    # ops.accuracy_drop: 0.2 tolerates legal's 11% drop.
    relaxed = model_accuracy(config=load_config(environ={"PIPELINE__OPS__ACCURACY_DROP": "0.2"}), store=store,
                             send=send)
    assert (relaxed["legal"]["alerts"], calls) == (0, [])
