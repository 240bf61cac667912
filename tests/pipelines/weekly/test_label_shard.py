"""label_shard: the labeller's forward passes per shard (the ``gpu`` queue's task); auto_label takes the
predictions by text digest, predicts in-line only what no shard predicted, and publishes the same bytes."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.config.label import LabelConfig
from pipelines.label import LabellerConfig, Labeller, train_labeller
from pipelines.modeling import resolve_device
from pipelines.label.registry import publish_labeller
from pipelines.partition import Interval
from pipelines.publish import read_committed_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, ingest_landing, process_partition
from pipelines.weekly.labels import PREDICTIONS, Predictions, predictions_key, text_digest

WEEK = Interval.parse("2026-10-04_2026-10-11")
TOPICS = {
    "contract": ["The contract was signed by both parties.", "The supplier breached the sales contract.",
                 "The lease agreement terminates in May.", "Both parties amended the service agreement."],
    "employment": ["The employee was dismissed without notice.", "Overtime pay was withheld by the employer.",
                   "The worker filed a claim for unpaid wages.", "The employer ended the employment contract early."],
}
TEXTS = ["The tenant signed a new lease contract.", "The company fired the engineer without cause.",
         "A purchase agreement was drafted.", "Wages were paid late to the staff."]


@pytest.fixture(scope="module")
def labeller_folder(tmp_path_factory):
    labeller = train_labeller(texts=[t for ts in TOPICS.values() for t in ts],
                              labels=[label for label, ts in TOPICS.items() for _ in ts], language="en",
                              config=LabellerConfig(), seed=7)
    return labeller.save(tmp_path_factory.mktemp("labeller") / "legal")


def _week(tmp_path, name, labeller_folder, *, shard_records=4):
    root = tmp_path / name
    config = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": f"file://{root}"})
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, shard_records=shard_records,
                                                                    batch_rows=3))
    store = LocalObjectStore(root / config.storage.bucket)
    publish_labeller(store, labeller_folder, name="legal")
    rows = [{"id": f"r{i:02d}", "text": f"Case {i}: {TEXTS[i % 4]}"} for i in range(14)]
    rows[3]["label"] = "contract"  # a record with its own label is not predicted
    rows[9]["text"] = rows[2]["text"]  # a duplicate: predicted in its shard, dropped by dedup
    store.put("landing/legal/2026-10-05/a.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    return config, store, PartitionRef(domain="legal", interval=WEEK, run_key="run-1")


def _count_predict(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = Labeller.predict

    def predict(self, texts, **kwargs):
        calls.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Labeller, "predict", predict)
    return calls


def test_label_shard_predicts_each_shard_and_auto_label_only_looks_them_up(tmp_path, labeller_folder, monkeypatch):
    from pipelines.weekly import clean_shard, govern_shard, label_shard, number_pii, plan_shards

    config, store, part = _week(tmp_path, "staged", labeller_folder)
    ingest_landing(config=config, store=store, part=part)
    tasks = plan_shards(config=config, store=store, part=part)
    assert len(tasks) == 4
    cleaned = [clean_shard(config=config, store=store, part=t.part(part), key=t.key) for t in tasks]
    number_pii(config=config, store=store, part=part, shards=len(tasks))
    calls = _count_predict(monkeypatch)
    reports = []
    for task, key in zip(tasks, cleaned):
        governed = govern_shard(config=config, store=store, part=task.part(part), key=key)
        reports.append(label_shard(config=config, store=store, part=task.part(part), key=governed))
    assert [r["predicted"] for r in reports] == [3, 4, 4, 2]  # 14 records, r03 has a label of its own
    assert {r["device"] for r in reports} == {"cpu"} and all(r["records_per_s"] > 0 for r in reports)
    assert reports[0]["version"] and all(r["version"] == reports[0]["version"] for r in reports)
    assert store.exists(predictions_key(config, part.shard_ref(2)))
    assert predictions_key(config, part.shard_ref(2)).startswith(part.staging(config, f"{PREDICTIONS}/"))
    assert sum(calls) == 13

    from pipelines.weekly import auto_label, find_duplicates, gather_shards

    calls.clear()
    deduplicated = find_duplicates(config=config, store=store, part=part,
                                   key=gather_shards(config=config, store=store, part=part)["key"])
    labelled = auto_label(config=config, store=store, part=part, key=deduplicated.key)
    assert calls == []  # every prediction came from label_shard
    assert labelled.counts["predicted"] == 12  # 13 predicted by the shards, the duplicate dropped by dedup


def test_a_week_published_from_shard_predictions_equals_one_labelled_in_line(tmp_path, labeller_folder,
                                                                            monkeypatch, caplog):
    import pipelines.weekly.flow as flow

    config, store, part = _week(tmp_path, "shards", labeller_folder)
    assert process_partition(config=config, store=store, part=part)["published"]
    sharded = read_committed_rows(store, f"curated/legal/{WEEK.name}")[1]

    # The same week with one shard task's predictions lost: auto_label predicts those records itself.
    original = flow.label_shard

    def lose_shard_1(*, config, store, part, key):
        report = original(config=config, store=store, part=part, key=key)
        if part.shard == 1:
            store.delete(predictions_key(config, part).removesuffix(".parquet") + ".json")
        return report

    monkeypatch.setattr(flow, "label_shard", lose_shard_1)
    config, store, part = _week(tmp_path, "lost", labeller_folder)
    with caplog.at_level(logging.WARNING, logger="pipelines.weekly"):
        assert process_partition(config=config, store=store, part=part)["published"]
    assert "shard 1: 4 of 4 records had no label_shard prediction" in caplog.text
    assert "shard 0" not in caplog.text and "shard 2" not in caplog.text
    assert read_committed_rows(store, f"curated/legal/{WEEK.name}")[1] == sharded

    predicted = [r for r in sharded if r["label_source"] == "predicted"]
    assert len(predicted) == 12 and {r["label"] for r in predicted} <= set(TOPICS)
    assert all(0.0 < r["label_confidence"] <= 1.0 for r in predicted)


def test_predictions_made_by_another_labeller_version_are_not_used(tmp_path, labeller_folder):
    from pipelines.weekly.labels import load_predictions

    config, store, part = _week(tmp_path, "versions", labeller_folder, shard_records=0)  # one shard
    ingest_landing(config=config, store=store, part=part)
    from pipelines.weekly import clean_shard, govern_shard, label_shard, plan_shards

    (task,) = plan_shards(config=config, store=store, part=part)
    key = clean_shard(config=config, store=store, part=task.part(part), key=task.key)
    report = label_shard(config=config, store=store, part=task.part(part),
                         key=govern_shard(config=config, store=store, part=task.part(part), key=key))
    assert predictions_key(config, task.part(part)).endswith(f"{PREDICTIONS}/all.parquet")
    assert len(load_predictions(config, store, part, report["version"])) == 13
    assert load_predictions(config, store, part, "an-older-version") is None


def test_predictions_lookup_tells_digests_with_the_same_prefix_apart():
    texts = [f"text {i}" for i in range(200)]
    digests = [text_digest(t) for t in texts]
    # Two made-up entries that share the first 8 bytes of "text 0"'s digest and differ after.
    twin = digests[0][:8] + bytes(24)
    predictions = Predictions([twin, *digests, digests[0][:8] + b"\xff" * 24],
                              ["b", *["a" if i % 2 else "c" for i in range(200)], "b"], [0.1, *[0.5] * 200, 0.2])
    assert len(predictions) == 202
    assert predictions.get("text 0") == ("c", 0.5)
    assert predictions.get("text 7") == ("a", 0.5)
    assert predictions.get("not staged") is None
    assert Predictions([], [], []).get("text 0") is None


def test_label_device_and_batch_size_are_checked():
    assert LabelConfig().device == "auto"
    assert LabelConfig(device="cuda:1").device == "cuda:1"
    for bad in ("gpu", "cuda:x", "", 3):
        with pytest.raises(ConfigError, match="governance.label.device"):
            LabelConfig(device=bad)
    with pytest.raises(ConfigError, match="governance.label.batch_size"):
        LabelConfig(batch_size=-1)
    assert LabelConfig().predict_batch_size("cpu", 128) == 128
    assert LabelConfig().predict_batch_size("cuda", 128) == 512
    assert LabelConfig(batch_size=64).predict_batch_size("cuda", 128) == 64


def test_a_device_the_worker_lacks_is_a_clear_error():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_a_labeller_predicts_on_the_gpu_as_on_the_cpu(labeller_folder):
    from pipelines.label import load_labeller

    texts = [f"Case {i}: {TEXTS[i % 4]} " + "The court heard the appeal. " * (i % 40) for i in range(300)]
    cpu = load_labeller(labeller_folder).predict(texts)
    labeller = load_labeller(labeller_folder).to("cuda")
    assert labeller.device == "cuda"
    gpu = labeller.predict(texts, batch_size=512)
    assert [label for label, _ in gpu] == [label for label, _ in cpu]
    assert max(abs(a - b) for (_, a), (_, b) in zip(gpu, cpu)) < 1e-3
