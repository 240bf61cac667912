"""Release requests on a local folder store: asked for without landing/ rights, executed once by ingestion."""

from __future__ import annotations

import json

import pytest

from pipelines.config import load_config
from pipelines.ops import OpsError, list_quarantine, quarantine_id, release_quarantined, rerun_partition
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.release_requests import (
    DONE, FAILED, PENDING, REQUEST_ACTION, execute_release_requests, list_release_requests, request_release,
)
from pipelines.security.audit import read_audit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, ingest_landing, process_partition, route_feedback

WEEK = Interval.parse("2026-10-04_2026-10-11")
FILE = "landing/legal/2026-10-05/a.jsonl"
ZH_URI, TEST_URI = f"{FILE}#L2", f"{FILE}#L3"
ZH, TEST = quarantine_id(ZH_URI), quarantine_id(TEST_URI)
FIXED = {"id": "z1", "text": "How contract disputes are handled."}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def published(tmp_path, monkeypatch):
    """One legal week with two quarantined records: a Chinese text (z1) and a test message (t1)."""
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    monkeypatch.delenv("PIPELINE_BUCKET", raising=False)
    config = load_config()
    store = LocalObjectStore(tmp_path / config.storage.bucket)
    lines = [{"id": "k1", "text": "The lease contract was renewed for two years."},
             {"id": "z1", "text": "合同纠纷的处理办法"}, {"id": "t1", "text": "test"},
             {"id": "k2", "text": "The tenant paid the deposit late."}]
    store.put(FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines).encode())
    assert process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))["published"]
    return config, store


def _curated_ids(store) -> list[str]:
    commit = latest_commit(store, f"curated/legal/{WEEK.name}")
    manifest = json.loads(store.get(commit.record["manifest"]))
    return [r["id"] for r in read_parquet_rows(store.get(manifest["files"]["data"]))]


def _released_files(store) -> list[str]:
    return sorted(o.key for o in store.list("landing/legal/2026-10-05/") if "released-" in o.key)


def test_a_request_is_executed_once_by_the_next_ingestion_and_its_outcome_recorded(published):
    config, store = published
    request = request_release(config=config, store=store, domain="legal", interval=WEEK.name, ids=[ZH],
                              why="translated (ticket 42)", who="console:rob", corrected=FIXED)
    assert request.key == f"review/releases/legal/{WEEK.name}/{request.request_id}.json"
    assert json.loads(store.get(request.key)) == {
        "request_id": request.request_id, "domain": "legal", "interval": WEEK.name, "ids": [ZH],
        "why": "translated (ticket 42)", "who": "console:rob", "requested_at": request.requested_at,
        "corrected": FIXED}
    assert (request.state, request.next_step) == \
        (PENDING, f"python -m pipelines ops rerun --domain legal --interval {WEEK.name}")
    [asked] = read_audit(store, action=REQUEST_ACTION)
    assert (asked["who"], asked["details"]) == ("console:rob", {"request": request.key, "ids": [ZH], "corrected": True})
    assert _released_files(store) == []  # nothing lands before ingestion runs
    with pytest.raises(OpsError, match=f"{ZH} is already in a pending request by console:rob"):
        request_release(config=config, store=store, domain="legal", interval=WEEK.name, ids=[ZH], why="again",
                        who="console:ann", corrected=FIXED)

    rerun = rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name, run_key="run-1")
    landing = f"landing/legal/2026-10-05/released-{request.request_id}.jsonl"
    assert _released_files(store) == [landing]
    assert _curated_ids(store) == ["k1", "k2", "z1"]  # the same run ingested what it released
    assert rerun["counts"]["records"] == {"in": 5, "kept": 3, "duplicate": 0, "quarantined": 2}
    [done] = list_release_requests(store=store, domain="legal", interval=WEEK.name)
    assert (done.state, done.outcome["landing_files"], done.outcome["executed_by"]) == (DONE, [landing], "run-1")
    [release] = read_audit(store, action="quarantine_release")
    assert (release["who"], release["why"], release["key"]) == \
        ("console:rob", "translated (ticket 42)", done.outcome["audit"])
    [found] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name)
    assert {r.id: r.released for r in found.records}[ZH] == landing

    # A second ingestion executes nothing: one landing file, one release, the outcome unchanged.
    part = PartitionRef(domain="legal", interval=WEEK, run_key="run-2")
    assert ingest_landing(config=config, store=store, part=part).releases == []
    assert rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)["published"] is False
    assert _released_files(store) == [landing] and len(read_audit(store, action="quarantine_release")) == 1
    assert list_release_requests(store=store, domain="legal", interval=WEEK.name) == [done]


def test_a_failed_request_is_recorded_and_the_partition_still_runs(published):
    config, store = published
    request = request_release(config=config, store=store, domain="legal", interval=WEEK.name, ids=[TEST],
                              why="looks fine", who="console:rob")
    # On-call released it with the CLI meanwhile; a stray non-request file sits next to the request.
    cli = release_quarantined(config=config, store=store, domain="legal", interval=WEEK.name, ids=[TEST],
                              why="cli", who="oncall")
    bad = f"review/releases/legal/{WEEK.name}/{'0' * 32}.json"
    store.put(bad, b'{"ids": "not a list"}')

    part = PartitionRef(domain="legal", interval=WEEK, run_key="run-1")
    ingested = ingest_landing(config=config, store=store, part=part)
    assert [(r["request"], r["state"]) for r in ingested.releases] == [(bad, FAILED), (request.key, FAILED)]
    assert ingested.releases[0]["error"] == "not executed: ids must be a non-empty list of strings"
    assert ingested.releases[1]["error"].startswith(f"{TEST} was already released to {cli.landing_files[0]}")
    assert [i["key"] for i in ingested.inputs] == [FILE, cli.landing_files[0]]  # the partition still runs
    assert rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)["published"] is True
    states = {r.key: (r.state, r.next_step) for r in list_release_requests(store=store, domain="legal")}
    assert states == {bad: (FAILED, "fix what the error says and release again (a new request)"),
                      request.key: (FAILED, "fix what the error says and release again (a new request)")}
    assert _released_files(store) == [cli.landing_files[0]]


def test_an_execution_cut_short_resumes_without_releasing_twice(published):
    """The run released the records (landing file, markers, audit) and died before recording the outcome."""
    config, store = published
    request = request_release(config=config, store=store, domain="legal", interval=WEEK.name, ids=[TEST],
                              why="looks fine", who="console:rob")
    release_quarantined(config=config, store=store, domain="legal", interval=WEEK.name, ids=[TEST], why="looks fine",
                        who="console:rob", release_id=request.request_id)
    [done] = execute_release_requests(config=config, store=store, domain="legal", interval=WEEK, run_key="retry")
    landing = f"landing/legal/2026-10-05/released-{request.request_id}.jsonl"
    assert (done.state, done.outcome["landing_files"], done.outcome["resumed"]) == (DONE, [landing], True)
    assert _released_files(store) == [landing] and len(read_audit(store, action="quarantine_release")) == 1
    # Died right after writing the landing file: the same bytes under the request's name are taken as its own,
    # other bytes are refused.
    key = f"landing/legal/2026-10-05/released-{'a' * 32}.jsonl"
    kwargs = dict(config=config, store=store, domain="legal", interval=WEEK.name, ids=[ZH], why="x", who="y",
                  corrected=FIXED, release_id="a" * 32)
    store.put(key, b"{}\n")
    with pytest.raises(OpsError, match="exists already with other records"):
        release_quarantined(**kwargs)
    store.put(key, (json.dumps(FIXED, ensure_ascii=False, sort_keys=True) + "\n").encode())
    assert release_quarantined(**kwargs).landing_files == (key,)


def test_request_refusals_write_nothing(published):
    config, store = published
    kwargs = dict(config=config, store=store, domain="legal", interval=WEEK.name, who="console:rob")
    with pytest.raises(OpsError, match="why is empty"):
        request_release(ids=[ZH], why=" ", **kwargs)
    with pytest.raises(OpsError, match="no quarantined entry with id 'nope'"):
        request_release(ids=["nope"], why="x", **kwargs)
    with pytest.raises(OpsError, match="exactly one id"):
        request_release(ids=[ZH, TEST], why="x", corrected=FIXED, **kwargs)
    with pytest.raises(OpsError, match="nothing published"):
        request_release(**{**kwargs, "interval": "2026-10-11_2026-10-18"}, ids=[ZH], why="x")
    assert list(store.list("review/releases/")) == [] and read_audit(store, action=REQUEST_ACTION) == []


def test_a_feedback_request_is_executed_where_feedback_is_routed(published):
    """Feedback naming no configured domain is quarantined by route_feedback; a corrected release lands it
    back in landing/feedback/ before the domains list it, and the legal partition takes it."""
    config, store = published
    from pipelines.serving.feedback import feedback_record

    fixed = feedback_record(request_id="fb1", domain="legal", model_version="1.0", question="Is the lease valid?",
                            answer="contract", rating=5)
    store.put("landing/feedback/2026-10-06/f.jsonl", (json.dumps({**fixed, "domain": "legl"}) + "\n").encode())
    route_feedback(config=config, store=store, interval=WEEK)
    [found] = list_quarantine(config=config, store=store, domain="feedback", interval=WEEK.name)
    [entry] = found.records
    request = request_release(config=config, store=store, domain="feedback", interval=WEEK.name, ids=[entry.id],
                              why="typo in the domain", who="console:rob", corrected=fixed)
    assert request.next_step == f"python -m pipelines ops rerun --domain <domain> --interval {WEEK.name}"
    routed = route_feedback(config=config, store=store, interval=WEEK, run_key="run-1")
    assert [(r["state"], r["landing_files"]) for r in routed.releases] == \
        [(DONE, [f"landing/feedback/2026-10-06/released-{request.request_id}.jsonl"])]
    assert (routed.routed, routed.quarantined) == ({"legal": 1}, 1)  # the original line stays quarantined
    rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)
    assert len(_curated_ids(store)) == 3  # k1, k2 and the released feedback
