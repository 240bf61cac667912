"""The weekly flow on a local folder store: governance runs before dedup, counts reconcile per step."""

from __future__ import annotations

import json

import pytest

from pipelines.config import load_config
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.serialize import read_parquet_rows
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


def test_auto_label_review_queue_and_reviewed_labels_win(env, tmp_path):
    import csv
    import math

    from pipelines.cli import main as cli
    from pipelines.label import LabellerConfig, train_labeller
    from pipelines.label.registry import publish_labeller

    config, store = env
    train = {
        "contract": ["The contract was signed by both parties.", "The supplier breached the sales contract.",
                     "The lease agreement terminates in May.", "Both parties amended the service agreement."],
        "employment": ["The employee was dismissed without notice.", "Overtime pay was withheld by the employer.",
                       "The worker filed a claim for unpaid wages.", "The employer ended the employment contract early."],
    }
    texts = [t for ts in train.values() for t in ts]
    labels = [label for label, ts in train.items() for _ in ts]
    labeller = train_labeller(texts=texts, labels=labels, language="en", config=LabellerConfig(), seed=7)
    labeller.save(tmp_path / "legal-labeller")
    publish_labeller(store, tmp_path / "legal-labeller", name="legal")

    unlabelled = ["The tenant signed a new lease contract.", "The company fired the engineer without cause.",
                  "A purchase agreement was drafted.", "Wages were paid late to the staff.",
                  "The vendor agreed to the contract terms.", "The manager cut the employee's hours.",
                  "The franchise agreement was renewed."]
    _land(store, "landing/legal/2026-10-05/a.jsonl",
          [{"id": f"u{i}", "text": t} for i, t in enumerate(unlabelled)] + [{"id": "s1", "text": "Source labelled.", "label": "contract"}])
    part = PartitionRef(domain="legal", interval=WEEK)
    process_partition(config=config, store=store, part=part)
    commit = latest_commit(store, f"curated/legal/{WEEK.name}")
    manifest = json.loads(store.get(commit.record["manifest"]))
    rows = {r["id"]: r for r in read_parquet_rows(store.get(manifest["files"]["data"]))}
    assert {rows[f"u{i}"]["label_source"] for i in range(7)} == {"predicted"}
    assert all(rows[f"u{i}"]["label"] in train and 0 < rows[f"u{i}"]["label_confidence"] <= 1 for i in range(7))
    assert (rows["s1"]["label"], rows["s1"]["label_source"], rows["s1"]["label_confidence"]) == ("contract", "source", None)
    counts = manifest["steps"]["labelled"]["counts"]
    assert counts["predicted"] == 7 and counts["queued"] >= math.ceil(0.15 * 7)

    queue_key = f"review/legal/{WEEK.name}/queue-{commit.version}.jsonl"
    queue = [json.loads(line) for line in store.get(queue_key).decode().splitlines()]
    assert len(queue) == counts["queued"] and {q["id"] for q in queue} <= {f"u{i}" for i in range(7)}
    low = {i for i, r in rows.items() if r["label_source"] == "predicted" and r["label_confidence"] < 0.6}
    assert low <= {q["id"] for q in queue}

    # A reviewer labels every queued record "employment" through the CLI; the re-run publishes a new version.
    root = ["--root", str(store.root)]
    assert cli(["review", *root, "export", "--queue", queue_key, "--out", str(tmp_path / "q.csv")]) == 0
    with open(tmp_path / "q.csv", encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.DictReader(fh))
    for line in lines:
        line.update(review_label="employment", reviewer="ann")
    with open(tmp_path / "q.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    assert cli(["review", *root, "import", "--queue", queue_key, "--in", str(tmp_path / "q.csv")]) == 0
    process_partition(config=config, store=store, part=part)
    again = latest_commit(store, f"curated/legal/{WEEK.name}")
    assert again.n == 2 and again.version != commit.version
    manifest = json.loads(store.get(again.record["manifest"]))
    reviewed = {r["id"]: r for r in read_parquet_rows(store.get(manifest["files"]["data"]))
                if r["label_source"] == "reviewed"}
    assert set(reviewed) == {q["id"] for q in queue}
    assert {r["label"] for r in reviewed.values()} == {"employment"}
    c = manifest["steps"]["labelled"]["counts"]
    agreed = sum(1 for q in queue if q["predicted_label"] == "employment")
    assert c["reviewed"] == len(queue)
    assert c["reviewed_share"] == pytest.approx(len(queue) / 8, abs=1e-4)
    assert c["agreement"] == pytest.approx(agreed / len(queue), abs=1e-4)
