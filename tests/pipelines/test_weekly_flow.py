"""The weekly flow on a local folder store: governance runs before dedup, counts reconcile per step."""

from __future__ import annotations

import json

import pytest

from pipelines.config import load_config
from pipelines.partition import Interval
from pipelines.publish import latest_commit, read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

WEEK = Interval.parse("2026-10-04_2026-10-11")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket)


def _land(store, key, records):
    store.put(key, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def test_markup_and_personal_data_variants_collapse_and_counts_reconcile(env):
    config, store = env
    _land(store, "landing/legal/2026-10-05/a.jsonl", [
        {"id": "a1", "text": "Please call 13800138000 about the <b>lease</b> contract."},
        {"id": "a2", "text": "Please call 13900139000 about the lease contract."},        # other phone: same record
        {"id": "a3", "text": "<p>Please call 13800138000 about the lease   contract.</p>"},  # markup: same
        {"id": "a4", "text": "test"},                                                       # dropped by rule
        {"id": "a5", "text": "合同纠纷的处理办法"},                                           # not an allowed language
        {"id": "a6", "text": "Email jane.doe@example.com to renew the licence."},
    ])
    result = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))
    assert result["published"] is True
    commit = latest_commit(store, f"curated/legal/{WEEK.name}")
    manifest = json.loads(store.get(commit.record["manifest"]))
    rows = read_parquet_rows(store.get(manifest["files"]["data"]))
    assert [(r["id"], r["text"]) for r in rows] == [
        ("a1", "Please call [PHONE_1] about the lease contract."),
        ("a6", "Email [EMAIL_1] to renew the licence."),
    ]
    assert manifest["counts"]["records"] == {"in": 6, "kept": 2, "duplicate": 2, "quarantined": 2}
    assert manifest["counts"]["quarantined_by_reason"] == {"clean.language.zh": 1, "clean.pattern.test_message": 1}
    dups = [json.loads(line) for line in store.get(manifest["files"]["duplicates"]).decode().splitlines()]
    assert [(d["id"], d["reason"]) for d in dups] == [("a2", "duplicate_within_partition"),
                                                        ("a3", "duplicate_within_partition")]
    steps = manifest["steps"]
    assert [steps[s]["kept"] for s in ("standardize", "cleaned", "masked", "dedup")] == [6, 4, 4, 2]
    assert steps["masked"]["counts"]["phone"] == 3 and steps["masked"]["counts"]["email"] == 1
    # Nothing in the published partition or its manifest holds the raw personal data.
    published = json.dumps(rows, ensure_ascii=False) + store.get(commit.record["manifest"]).decode()
    assert "13800138000" not in published and "13900139000" not in published and "jane.doe" not in published


def test_sensitive_policies_flag_and_drop(env):
    config, store = env
    # legal uses the default policy (flag), customer_service drops (config/pipeline.yaml).
    _land(store, "landing/legal/2026-10-05/a.jsonl", [
        {"id": "l1", "text": "The defendant ran a ponzi scheme for years."},
        {"id": "l2", "text": "The lease was renewed."},
    ])
    _land(store, "landing/customer_service/2026-10-05/a.jsonl", [
        {"id": "c1", "text": "我想加入杀猪盘投资群", "question": "我想加入杀猪盘投资群", "answer": "不可以"},
        {"id": "c2", "text": "你好，请问营业时间？", "question": "你好", "answer": "九点到五点"},
    ])
    for domain in ("legal", "customer_service"):
        process_partition(config=config, store=store, part=PartitionRef(domain=domain, interval=WEEK))
    legal = json.loads(store.get(latest_commit(store, f"curated/legal/{WEEK.name}").record["manifest"]))
    rows = read_parquet_rows(store.get(legal["files"]["data"]))
    assert [(r["id"], r["sensitive_flags"]) for r in rows] == [("l1", "fraud"), ("l2", None)]
    cs = json.loads(store.get(latest_commit(store, f"curated/customer_service/{WEEK.name}").record["manifest"]))
    assert [r["id"] for r in read_parquet_rows(store.get(cs["files"]["data"]))] == ["c2"]
    assert cs["counts"]["quarantined_by_reason"] == {"sensitive.drop.fraud": 1}
    assert cs["steps"]["filtered"]["counts"]["policy"] == "drop"
    quarantined = store.get(cs["files"]["quarantine"]).decode()
    assert "杀猪盘" not in quarantined  # rejections never carry the matched words
