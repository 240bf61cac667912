"""Nothing lost on bad input: every row a file holds is counted, bad rows and files are quarantined with a
reason, misplaced files are reported, an all-quarantined week fails validation, staging never outlives a run."""

from __future__ import annotations

import json
import logging

import pytest

from pipelines.config import ConfigError, ValidationConfig, load_config
from pipelines.ingest.parse import MAX_FIELD_CHARS
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, ValidationFailed, ingest_landing, process_partition

WEEK = Interval.parse("2026-10-04_2026-10-11")
PART = PartitionRef(domain="legal", interval=WEEK, run_key="t1")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket)


def _land(store, key, records):
    store.put(key, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def _manifest(store, domain="legal"):
    return json.loads(store.get(latest_commit(store, f"curated/{domain}/{WEEK.name}").record["manifest"]))


def test_an_oversize_csv_cell_quarantines_one_row_and_the_rest_of_the_file_is_published(env):
    config, store = env
    rows = [("The lease ends in May.", "c1"), ("x" * (MAX_FIELD_CHARS + 5), "c2"),
            ("The employee was dismissed.", "c3"), ("The contract was signed.", "c4")]
    store.put("landing/legal/2026-10-05/a.csv",
              ("text,id\n" + "".join(f"{t},{i}\n" for t, i in rows)).encode())
    ingest = ingest_landing(config=config, store=store, part=PART)
    assert (ingest.records_in, ingest.parsed, ingest.rejected) == (4, 3, 1)
    process_partition(config=config, store=store, part=PART)
    manifest = _manifest(store)
    assert manifest["counts"]["records"] == {"in": 4, "kept": 3, "duplicate": 0, "quarantined": 1}
    assert manifest["counts"]["quarantined_by_reason"] == {"field_too_large": 1}
    assert [r["id"] for r in read_parquet_rows(store.get(manifest["files"]["data"]))] == ["c1", "c3", "c4"]


def test_a_lone_surrogate_and_a_deep_nest_are_record_rejections_not_a_crash(env):
    config, store = env
    store.put("landing/legal/2026-10-05/a.jsonl",
              b'{"id": "j1", "text": "The lease ends in May."}\n'
              b'{"id": "j2", "text": "half \\ud800 a pair"}\n'
              + b"[" * 100_000 + b"\n"
              b'{"id": "j4", "text": "The employee was dismissed."}\n')
    result = process_partition(config=config, store=store, part=PART)
    assert result["published"] is True
    manifest = _manifest(store)
    assert manifest["counts"]["records"] == {"in": 4, "kept": 2, "duplicate": 0, "quarantined": 2}
    assert manifest["counts"]["quarantined_by_reason"] == {"lone_surrogate": 1, "too_deeply_nested": 1}
    quarantine = [json.loads(line) for line in store.get(manifest["files"]["quarantine"]).splitlines()]
    assert [(q["source_uri"].rsplit("/", 1)[-1], q["kind"]) for q in quarantine] == [
        ("a.jsonl#L2", "record"), ("a.jsonl#L3", "record")]


def test_a_hash_in_a_file_name_counts_a_whole_file_rejection_as_a_file(env):
    config, store = env
    store.put("landing/legal/2026-10-05/bad#1.csv", b"colour\nred\nblue\n")
    _land(store, "landing/legal/2026-10-05/good.jsonl", [{"id": "g1", "text": "The lease ends in May."}])
    ingest = ingest_landing(config=config, store=store, part=PART)
    assert (ingest.records_in, ingest.files) == (1, {"read": 1, "quarantined": 1, "misplaced": 0})
    process_partition(config=config, store=store, part=PART)
    manifest = _manifest(store)
    assert manifest["counts"]["records"] == {"in": 1, "kept": 1, "duplicate": 0, "quarantined": 0}
    assert manifest["counts"]["quarantined_by_reason"] == {"wrong_columns": 1}
    quarantine = [json.loads(line) for line in store.get(manifest["files"]["quarantine"]).splitlines()]
    assert [(q["source_uri"], q["kind"]) for q in quarantine] == [("landing/legal/2026-10-05/bad#1.csv", "file")]


def test_files_outside_date_folders_are_reported(env, caplog):
    config, store = env
    _land(store, "landing/legal/2026-10-05/a.jsonl", [{"id": "a1", "text": "The lease ends in May."}])
    _land(store, "landing/legal/2026-11-3/b.jsonl", [{"id": "b1", "text": "Misplaced."}])
    _land(store, "landing/legal/c.jsonl", [{"id": "c1", "text": "Misplaced too."}])
    _land(store, "landing/feedback/d.jsonl", [{"id": "d1", "text": "Misplaced feedback."}])
    with caplog.at_level(logging.WARNING, logger="pipelines.weekly"):
        ingest = ingest_landing(config=config, store=store, part=PART)
    assert ingest.misplaced == ["landing/legal/2026-11-3/b.jsonl", "landing/legal/c.jsonl"]
    assert ingest.files == {"read": 1, "quarantined": 0, "misplaced": 2}
    assert ingest.records_in == 1
    assert ("ingest legal: 2 landing file(s) outside any <YYYY-MM-DD>/ folder are not read (move them into their "
            "arrival date's folder): landing/legal/2026-11-3/b.jsonl, landing/legal/c.jsonl") in caplog.messages
    from pipelines.weekly import route_feedback

    assert route_feedback(config=config, store=store, interval=WEEK).misplaced == ["landing/feedback/d.jsonl"]


def test_a_week_where_every_record_is_quarantined_fails_validation_and_publishes_nothing(env):
    config, store = env
    _land(store, "landing/legal/2026-10-05/a.jsonl", [{"id": "t1", "text": "test"}, {"id": "t2", "text": "asdf"}])
    with pytest.raises(ValidationFailed) as failed:
        process_partition(config=config, store=store, part=PART)
    assert str(failed.value).startswith(
        f"legal {WEEK.name}: only 0 of 2 record(s) passed governance, fewer than validation.min_records=1 "
        "(quarantined: clean.pattern.test_message 2); partition NOT published; report: file://")
    assert latest_commit(store, f"curated/legal/{WEEK.name}") is None
    report = json.loads(store.get(f"quarantine/legal/{WEEK.name}/validation-failed-t1.json"))
    assert (report["success"], report["failed"][0]["records_in"], report["failed"][0]["passed_governance"],
            report["failed"][0]["quarantined_by_reason"]) == (False, 2, 0, {"clean.pattern.test_message": 2})
    assert list(store.list("staging/")) == []  # failed or not, no raw text stays behind


def test_min_records_is_configurable_and_checked_when_the_file_loads(env, monkeypatch):
    config, store = env
    with pytest.raises(ConfigError, match=r"validation.min_records=-1: use an integer >= 0"):
        ValidationConfig(suite=config.validation.suite, min_records=-1)
    monkeypatch.setenv("PIPELINE__VALIDATION__MIN_RECORDS", "0")
    lenient = load_config()
    assert lenient.validation.min_records == 0
    _land(store, "landing/legal/2026-10-05/a.jsonl", [{"id": "t1", "text": "test"}])
    assert process_partition(config=lenient, store=store, part=PART)["published"] is True


def test_no_staging_object_of_the_partition_remains_after_a_run_and_a_rerun(env):
    config, store = env
    _land(store, "landing/legal/2026-10-05/a.jsonl", [{"id": "a1", "text": "Call 13800138000 about the lease."}])
    first = process_partition(config=config, store=store, part=PART)
    assert list(store.list(f"staging/legal/{WEEK.name}/")) == []
    again = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK,
                                                                             run_key="t2"))
    assert (first["published"], again["published"], again["reason"]) == (True, False, "unchanged")
    assert list(store.list(f"staging/legal/{WEEK.name}/")) == []
    # A domain without input this week leaves nothing either.
    process_partition(config=config, store=store, part=PartitionRef(domain="medical", interval=WEEK))
    assert list(store.list("staging/")) == []


def test_cli_one_bad_domain_never_stops_another(env, capsys):
    from pipelines.cli import main as cli

    config, store = env
    _land(store, "landing/customer_service/2026-10-05/a.jsonl",
          [{"id": "c1", "text": "test", "question": "test", "answer": "test"}])  # every record quarantined
    _land(store, "landing/legal/2026-10-05/a.jsonl", [{"id": "a1", "text": "The lease ends in May."}])
    code = cli(["ingest", "--interval", WEEK.name, "--domain", "customer_service", "--domain", "legal"])
    out, err = capsys.readouterr()
    assert code == 1
    results = json.loads(out)
    assert results["legal"]["published"] is True
    assert results["customer_service"]["published"] is False
    assert results["customer_service"]["error"].startswith("ValidationFailed: customer_service ")
    assert err.splitlines()[-1].startswith(
        f"error: 1 of 2 domain(s) not published in {WEEK.name}: customer_service: ValidationFailed: ")
    assert latest_commit(store, f"curated/legal/{WEEK.name}") is not None
