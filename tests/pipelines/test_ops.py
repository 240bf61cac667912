"""On-call operations on a local folder store: quarantine list/show/release, reruns, SLA-style alerts."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.ops import (
    OpsError, SlaConfig, check_durations, list_quarantine, quarantine_id, release_quarantined, rerun_partition,
    show_quarantined,
)
from pipelines.cli import main as ops_main
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.security.audit import read_audit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

WEEK = Interval.parse("2026-10-04_2026-10-11")
FILE = "landing/legal/2026-10-05/a.jsonl"
ZH_URI, TEST_URI, BAD_JSON_URI = f"{FILE}#L2", f"{FILE}#L3", f"{FILE}#L4"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    monkeypatch.delenv("PIPELINE_BUCKET", raising=False)
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket)


@pytest.fixture
def published(env):
    """One legal week with three quarantined lines: a Chinese text, a test message, broken JSON."""
    config, store = env
    lines = [json.dumps({"id": "k1", "text": "The lease contract was renewed for two years."}),
             json.dumps({"id": "z1", "text": "合同纠纷的处理办法"}, ensure_ascii=False),
             json.dumps({"id": "t1", "text": "test"}),
             '{"id": "j1", "text": "broken',
             json.dumps({"id": "k2", "text": "The tenant paid the deposit late."})]
    store.put(FILE, ("\n".join(lines) + "\n").encode())
    result = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))
    assert result["published"] is True
    return config, store, result


def _rows(store) -> list[dict]:
    commit = latest_commit(store, f"curated/legal/{WEEK.name}")
    return read_parquet_rows(store.get(json.loads(store.get(commit.record["manifest"]))["files"]["data"]))


def test_list_counts_by_reason_and_ids(published):
    config, store, result = published
    [found] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name)
    assert found.version == result["version"]
    assert found.counts() == {"clean.language.zh": 1, "clean.pattern.test_message": 1, "invalid_json": 1}
    assert [(r.id, r.source_uri, r.reason, r.released) for r in found.records] == [
        (quarantine_id(BAD_JSON_URI), BAD_JSON_URI, "invalid_json", None),
        (quarantine_id(ZH_URI), ZH_URI, "clean.language.zh", None),
        (quarantine_id(TEST_URI), TEST_URI, "clean.pattern.test_message", None),
    ]
    [only] = list_quarantine(config=config, store=store, domain="legal", reason="clean.language.zh")
    assert [r.source_uri for r in only.records] == [ZH_URI]
    assert list_quarantine(config=config, store=store, domain="medical") == []


def test_show_gives_the_original_record_from_landing(published):
    config, store, _ = published
    shown = show_quarantined(config=config, store=store, domain="legal", interval=WEEK.name,
                             record_id=quarantine_id(ZH_URI))
    assert shown["original"] == {"id": "z1", "text": "合同纠纷的处理办法"}
    assert (shown["record"]["reason"], shown["record"]["kind"]) == ("clean.language.zh", "record")
    assert shown["release"] is None
    # The source URI works as an id too; a record that never parsed has no original.
    assert show_quarantined(config=config, store=store, domain="legal", interval=WEEK.name,
                            record_id=BAD_JSON_URI)["original"] is None


def test_released_corrected_record_is_curated_on_rerun_and_audited(published, tmp_path):
    config, store, first = published
    qid = quarantine_id(ZH_URI)
    result = release_quarantined(config=config, store=store, domain="legal", interval=WEEK.name, ids=[qid],
                                 why="translated by the legal team (ticket 42)", who="alice",
                                 corrected={"id": "z1", "text": "How contract disputes are handled."})
    [landing_key] = result.landing_files
    assert landing_key.startswith("landing/legal/2026-10-05/released-") and landing_key.endswith(".jsonl")
    assert json.loads(store.get(landing_key)) == {"id": "z1", "text": "How contract disputes are handled."}
    assert [(r["id"], r["corrected"], r["landing_uri"]) for r in result.released] == [(qid, True, f"{landing_key}#L1")]

    [entry] = read_audit(store, action="quarantine_release")
    assert (entry["who"], entry["why"], entry["what"]) == ("alice", "translated by the legal team (ticket 42)",
                                                           f"quarantine legal {WEEK.name}")
    assert entry["details"]["records"][0]["source_uri"] == ZH_URI and entry["key"] == result.audit_key

    # Before the rerun nothing changed; the rerun takes the released file through every step.
    assert [r["id"] for r in _rows(store)] == ["k1", "k2"]
    rerun = rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name, who="alice")
    assert rerun["published"] is True and rerun["version"] != first["version"]
    assert [(r["id"], r["text"], r["source_uri"]) for r in _rows(store)] == [
        ("k1", "The lease contract was renewed for two years.", f"{FILE}#L1"),
        ("k2", "The tenant paid the deposit late.", f"{FILE}#L5"),
        ("z1", "How contract disputes are handled.", f"{landing_key}#L1"),
    ]
    assert rerun["counts"]["records"] == {"in": 6, "kept": 3, "duplicate": 0, "quarantined": 3}
    # The original line stays quarantined (landing is never changed) and is shown as released.
    [found] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name)
    assert {r.source_uri: r.released for r in found.records}[ZH_URI] == landing_key
    assert rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)["published"] is False


def test_released_original_goes_through_governance_again(published):
    config, store, _ = published
    result = release_quarantined(config=config, store=store, domain="legal", interval=WEEK.name,
                                 ids=[quarantine_id(TEST_URI)], why="looks fine to me", who="bob")
    [landing_key] = result.landing_files
    assert json.loads(store.get(landing_key)) == {"id": "t1", "text": "test"}
    rerun = rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)
    # Nothing bypasses governance: the same rule quarantines the released copy too.
    [found] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name,
                              reason="clean.pattern.test_message")
    assert [r.source_uri for r in found.records] == [TEST_URI, f"{landing_key}#L1"]
    assert [r["id"] for r in _rows(store)] == ["k1", "k2"]
    assert rerun["counts"]["records"]["quarantined"] == 4


def test_release_refusals(published, tmp_path):
    config, store, _ = published
    kwargs = dict(config=config, store=store, domain="legal", interval=WEEK.name, why="x", who="bob")
    with pytest.raises(OpsError, match="no quarantined entry with id 'nope'"):
        release_quarantined(ids=["nope"], **kwargs)
    with pytest.raises(OpsError, match="no parseable original in landing"):
        release_quarantined(ids=[quarantine_id(BAD_JSON_URI)], **kwargs)
    with pytest.raises(OpsError, match="exactly one --id"):
        release_quarantined(ids=[quarantine_id(ZH_URI), quarantine_id(TEST_URI)], corrected={"id": "a"}, **kwargs)
    with pytest.raises(OpsError, match="--why is empty"):
        release_quarantined(**{**kwargs, "why": " "}, ids=[quarantine_id(ZH_URI)])
    with pytest.raises(OpsError, match="nothing published"):
        release_quarantined(**{**kwargs, "interval": "2026-10-11_2026-10-18"}, ids=[quarantine_id(ZH_URI)])
    release_quarantined(ids=[quarantine_id(ZH_URI)], **kwargs)
    with pytest.raises(OpsError, match="already released to landing/legal/2026-10-05/released-"):
        release_quarantined(ids=[quarantine_id(ZH_URI)], **kwargs)
    assert len(read_audit(store, action="quarantine_release")) == 1
    assert len([o for o in store.list("landing/legal/2026-10-05/") if "released-" in o.key]) == 1


def test_cli_errors_exit_2_without_traceback(published, capsys, tmp_path):
    base = ["ops", "quarantine"]
    assert ops_main([*base, "show", "--domain", "legal", "--interval", WEEK.name, "--id", "nope"]) == 2
    assert "error: legal 2026-10-04_2026-10-11: no quarantined entry with id 'nope'" in capsys.readouterr().err
    assert ops_main([*base, "list", "--domain", "legal", "--interval", "2026-10-11_2026-10-18"]) == 2
    assert "nothing published" in capsys.readouterr().err
    assert ops_main([*base, "list", "--domain", "nosuch"]) == 2
    assert "unknown domain 'nosuch'" in capsys.readouterr().err
    assert ops_main([*base, "list", "--domain", "legal", "--interval", "2026-13-01_x"]) == 2
    assert capsys.readouterr().err.startswith("error: interval")
    bad = tmp_path / "fix.json"
    bad.write_text("[1, 2]")
    assert ops_main([*base, "release", "--domain", "legal", "--interval", WEEK.name, "--id", quarantine_id(ZH_URI),
                     "--why", "w", "--who", "me", "--from-file", str(bad)]) == 2
    assert "expected one JSON object, got list" in capsys.readouterr().err
    assert ops_main(["ops", "rerun", "--domain", "feedback", "--interval", WEEK.name]) == 2
    assert "unknown domain 'feedback'" in capsys.readouterr().err


def test_cli_list_and_release(published, capsys, tmp_path):
    assert ops_main(["ops", "quarantine", "list", "--domain", "legal", "--counts-only"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert (item["interval"], item["total"], item["by_reason"], "records" in item) == (
        WEEK.name, 3, {"clean.language.zh": 1, "clean.pattern.test_message": 1, "invalid_json": 1}, False)
    fix = tmp_path / "fix.json"
    fix.write_text(json.dumps({"id": "j1", "text": "The broken line, fixed by hand."}))
    assert ops_main(["ops", "quarantine", "release", "--domain", "legal", "--interval", WEEK.name,
                     "--id", quarantine_id(BAD_JSON_URI), "--why", "re-sent by the source", "--who", "carol",
                     "--from-file", str(fix)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["next_step"] == f"python -m pipelines ops rerun --domain legal --interval {WEEK.name}"
    assert "now rerun the partition" in out.err
    assert ops_main(["ops", "rerun", "--domain", "legal", "--interval", WEEK.name, "--who", "carol"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["records"]["kept"] == 3


# ------------------------------------------------------------------------------ SLA-style alerts
def test_sla_config_defaults_overrides_and_errors():
    sla = SlaConfig(dags={"weekly_ingest": {"run_minutes": 30}})
    assert (sla.for_dag("weekly_ingest").run_minutes, sla.for_dag("weekly_ingest").task_minutes) == (30, 60.0)
    assert sla.for_dag("other") is sla
    assert load_config().ops.sla == SlaConfig()
    with pytest.raises(ConfigError, match="ops.run_minutes=0"):
        SlaConfig(run_minutes=0)
    with pytest.raises(ConfigError, match="must be below ops.task_timeout_minutes"):
        SlaConfig(task_minutes=400)
    with pytest.raises(ConfigError, match=r"ops.dags.weekly_ingest: unknown key\(s\) \['minutes'\]"):
        SlaConfig(dags={"weekly_ingest": {"minutes": 3}})


def test_check_durations_task_and_leaf_run():
    sla = SlaConfig(run_minutes=10, task_minutes=5, task_timeout_minutes=20)
    common = dict(sla=sla, dag_id="d", task_id="t", run_id="r")
    assert check_durations(task_seconds=300, run_seconds=600, is_leaf=True, **common) == []
    breaches = check_durations(task_seconds=301, run_seconds=601, is_leaf=True, **common)
    assert [(b.scope, b.seconds, b.limit_seconds) for b in breaches] == [("task", 301, 300), ("run", 601, 600)]
    # Only leaf tasks speak for the run (they finish last).
    assert [b.scope for b in check_durations(task_seconds=1, run_seconds=9999, is_leaf=False, **common)] == []


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"errcode": 0}')

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PIPELINE__ALERTS__WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield _Receiver.received
    server.shutdown()
    server.server_close()


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _context(*, task_minutes: float, run_minutes: float, leaf: bool) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    ti = _Obj(dag_id="weekly_ingest", task_id="partition.publish_partition", map_index=0,
              start_date=now - dt.timedelta(minutes=task_minutes), end_date=now)
    return {"ti": ti, "task_instance": ti, "run_id": "backfill__2026-10-11T00:00:00+00:00",
            "task": _Obj(downstream_task_ids=set() if leaf else {"republish_displaced"}),
            "dag_run": _Obj(start_date=now - dt.timedelta(minutes=run_minutes))}


def test_sla_callback_alerts_through_the_webhook(webhook):
    from mlops_airflow import task_sla_alert, task_timeout

    task_sla_alert(_context(task_minutes=5, run_minutes=150, leaf=False))  # within limits for a non-leaf task
    assert webhook == []
    task_sla_alert(_context(task_minutes=61, run_minutes=150, leaf=True))
    [body] = webhook
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "weekly_ingest: run took longer than expected"
    text = body["markdown"]["text"]
    assert "task `partition.publish_partition` took 61.0 min, expected at most 60.0 min" in text
    assert "the run (at task `partition.publish_partition`) took 150.0 min, expected at most 120.0 min" in text
    assert "backfill__2026-10-11T00:00:00+00:00" in text
    assert task_timeout("weekly_ingest") == dt.timedelta(minutes=360)


def test_sla_callback_never_raises(webhook):
    from mlops_airflow import task_sla_alert

    task_sla_alert({})  # no task instance at all: logged, nothing sent, no exception
    assert webhook == []


def test_add_parser_wires_into_the_top_level_cli(published, capsys, monkeypatch):
    """`ops` beside the other stages in `python -m pipelines`, --config from the top level."""
    import pipelines.cli as top

    assert top.main(["ops", "quarantine", "list", "--domain", "legal", "--interval", WEEK.name,
                     "--reason", "invalid_json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert [r["source_uri"] for r in item["records"]] == [BAD_JSON_URI]
    assert top.main(["ops", "quarantine", "show", "--domain", "legal", "--interval", WEEK.name, "--id", "x"]) == 2


def test_release_with_encryption_at_rest(tmp_path, monkeypatch):
    """security.enabled: quarantine/ and the markers are encrypted; the tools read them through open_store."""
    import base64

    from pipelines.storage import open_store

    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    monkeypatch.delenv("PIPELINE_BUCKET", raising=False)
    monkeypatch.setenv("PIPELINE__SECURITY__ENABLED", "true")
    monkeypatch.setenv("PIPELINE__SECURITY__KEYRING_PATH", str(tmp_path / "none.json"))
    monkeypatch.setenv("PIPELINE_KEK_K1", base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("PIPELINE_KEK_ACTIVE", "k1")
    monkeypatch.setenv("PIPELINE__VALIDATION__MIN_RECORDS", "0")  # publish the all-quarantined week to release from it
    config = load_config()
    store = open_store(config)
    store.put(FILE, (json.dumps({"id": "z1", "text": "合同纠纷的处理办法"}, ensure_ascii=False) + "\n").encode())
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))
    [found] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name)
    raw = LocalObjectStore(tmp_path / config.storage.bucket)
    assert "合同".encode() not in raw.get(found.key)  # at rest, the quarantine is ciphertext
    release_quarantined(config=config, store=store, domain="legal", interval=WEEK.name, ids=[found.records[0].id],
                        why="translated", who="alice", corrected={"id": "z1", "text": "A contract dispute."})
    assert rerun_partition(config=config, store=store, domain="legal", interval=WEEK.name)["counts"]["records"][
        "kept"] == 1
    [again] = list_quarantine(config=config, store=store, domain="legal", interval=WEEK.name)
    assert again.records[0].released.startswith("landing/legal/2026-10-05/released-")
