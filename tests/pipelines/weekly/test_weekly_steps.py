"""The chain's steps on a local folder store: each reads the key it is given, returns the key it wrote."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.config import load_config
from pipelines.ingest.parse import Rejection
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.serialize import parquet_bytes, read_parquet_rows
from pipelines.standardize import to_row
from pipelines.storage import LocalObjectStore
from pipelines.weekly import (
    CHAIN, PartitionRef, StepResult, clean_text, ingest_landing, process_partition, validate_batch,
)
from pipelines.weekly import steps as weekly_steps
from pipelines.weekly.steps import Applied, step

WEEK = Interval.parse("2026-10-04_2026-10-11")
PART = PartitionRef(domain="legal", interval=WEEK, run_key="t1")
STAGING = f"staging/legal/{WEEK.name}/t1"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket)


def _land(store, key, records):
    store.put(key, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def test_each_step_reads_the_previous_key_and_hands_on_its_own(env):
    config, store = env
    _land(store, "landing/legal/2026-10-05/a.jsonl", [
        {"id": "a1", "text": "Call 13800138000 about the <b>lease</b> contract."},
        {"id": "a2", "text": "Call 13900139000 about the lease contract."},
        {"id": "a3", "text": "test"},
    ])
    ingest = ingest_landing(config=config, store=store, part=PART)
    assert (ingest.key, ingest.records_in, ingest.parsed, ingest.files) == (
        f"{STAGING}/raw.jsonl", 3, 3, {"read": 1, "quarantined": 0, "misplaced": 0})
    key, handed = ingest.key, []
    for run in CHAIN:
        result = run(config=config, store=store, part=PART, key=key)
        assert isinstance(result, StepResult) and result.step == run.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.key = "elsewhere"  # type: ignore[misc]
        # What the DAG puts in XCom: JSON-able, and the same dict the step staged as its report.
        assert json.loads(json.dumps(result.to_dict())) == json.loads(store.get(f"{STAGING}/{run.name}.json"))
        handed.append((run.__name__, result.key.rsplit("/", 1)[-1], result.rows_in, result.kept, result.rejected))
        key = result.key
    assert handed == [
        ("standardize_records", "standardized.parquet", 3, 3, 0),
        ("clean_text", "cleaned.parquet", 3, 2, 1),
        ("mask_pii", "masked.parquet", 2, 2, 0),
        ("filter_sensitive", "filtered.parquet", 2, 2, 0),
        ("find_duplicates", "deduplicated.parquet", 2, 1, 0),
        ("auto_label", "labelled.parquet", 1, 1, 0),
    ]
    validated = validate_batch(config=config, store=store, part=PART, key=key)
    assert (validated.key, validated.success, validated.rows) == (key, True, 1)


def test_a_step_reads_whatever_key_it_is_given(env):
    config, store = env
    rows = [to_row({"id": i, "domain": "legal", "text": t, "label": None, "source": "files",
                    "source_uri": f"landing/legal/2026-10-05/a.jsonl#L{n}", "arrival_date": "2026-10-05",
                    "created_at": None, "language": "en", "usage": "train"})
            for n, (i, t) in enumerate([("k1", "<p>The lease ends in May.</p>"), ("k2", "test")], 1)]
    store.put("elsewhere/rows.parquet", parquet_bytes(rows))
    result = clean_text(config=config, store=store, part=PART, key="elsewhere/rows.parquet")
    assert result.key == f"{STAGING}/cleaned.parquet"
    assert [(r["id"], r["text"].strip()) for r in read_parquet_rows(store.get(result.key))] == [
        ("k1", "The lease ends in May.")]
    rejected = [json.loads(line) for line in store.get(f"{STAGING}/rejected.cleaned.jsonl").splitlines()]
    assert [r["reason"] for r in rejected] == ["clean.pattern.test_message"]


def test_a_governance_step_is_one_function_and_one_line_in_the_chain(env, monkeypatch):
    config, store = env

    @step("no_lease")
    def drop_lease(config, store, part):
        """Drop records that mention a lease (a stand-in governance rule)."""

        def apply(rows):
            kept = [r for r in rows if "lease" not in r["text"]]
            dropped = [Rejection(r["source_uri"], "governance", "no_lease", "mentions a lease") for r in rows
                       if "lease" in r["text"]]
            return Applied(kept, dropped, {"dropped": len(dropped)})

        return apply

    chain = list(weekly_steps.CHAIN)
    chain.insert(chain.index(weekly_steps.filter_sensitive) + 1, drop_lease)
    monkeypatch.setattr(weekly_steps, "CHAIN", tuple(chain))
    _land(store, "landing/legal/2026-10-05/a.jsonl", [
        {"id": "a1", "text": "The lease ends in May."},
        {"id": "a2", "text": "The employee was dismissed."},
    ])
    result = process_partition(config=config, store=store, part=PART)
    assert result["published"] is True
    manifest = json.loads(store.get(latest_commit(store, f"curated/legal/{WEEK.name}").record["manifest"]))
    assert manifest["counts"]["records"] == {"in": 2, "kept": 1, "duplicate": 0, "quarantined": 1}
    assert manifest["counts"]["quarantined_by_reason"] == {"no_lease": 1}
    assert set(manifest["steps"]) == {"ingest", "standardize", "cleaned", "masked", "filtered", "no_lease", "dedup",
                                      "labelled"}
    assert manifest["steps"]["no_lease"] == {"in": 2, "kept": 1, "rejected": 1, "counts": {"dropped": 1}}
    assert [r["id"] for r in read_parquet_rows(store.get(manifest["files"]["data"]))] == ["a2"]
