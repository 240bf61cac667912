"""End to end: the real weekly_ingest DAG (dag.test) against a real SeaweedFS server, on the bundled sample."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from e2e_helpers import WEEKS, committed, data_digest, jsonl, load_sample, run_dag_week, store_and_config

pytestmark = pytest.mark.usefixtures("airflow_db")

DOMAINS = ["customer_service", "finance", "legal", "medical", "product_reviews"]


def test_weekly_ingest_publishes_every_domain_and_counts_reconcile(s3_bucket, tmp_path):
    config, store = store_and_config()
    load_sample(store)
    run = run_dag_week(WEEKS[0])
    assert run.state == "success"
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    # one mapped partition per configured domain; code has no sample landing data (its week publishes nothing new)
    assert sorted(config.domains) == sorted([*DOMAINS, "code"])
    assert {m for (t, m) in states if t == "partition.publish_partition"} == set(range(len(config.domains)))
    assert list(store.list("staging/")) == []  # the run's staging (raw, unmasked text) does not outlive it

    for domain in DOMAINS:
        commit, manifest = committed(store, domain, WEEKS[0])
        c = manifest["counts"]["records"]
        assert c["in"] == c["kept"] + c["duplicate"] + c["quarantined"], (domain, c)
        assert sum(manifest["counts"]["quarantined_by_reason"].values()) >= c["quarantined"]
        assert manifest["suite"]["success"] is True
        assert commit["version"] == manifest["version"]
        # The partition is readable by `datasets` exactly as published.
        local = tmp_path / f"{domain}.parquet"
        local.write_bytes(store.get(manifest["files"]["data"]))
        from datasets import load_dataset

        ds = load_dataset("parquet", data_files=str(local), split="train")
        assert ds.num_rows == c["kept"]
        assert len(set(ds["id"])) == c["kept"]

    # Deliberate duplicates of week 1 (data/sample/README.md #1, #8): same text after NFKC and whitespace folding.
    _, legal = committed(store, "legal", WEEKS[0])
    dups = jsonl(store, legal["files"]["duplicates"])
    assert {(d["source_uri"], d["reason"]) for d in dups} == {
        ("landing/legal/2026-10-06/batch-01.jsonl#L3", "duplicate_within_partition"),
        ("landing/legal/2026-10-06/batch-01.jsonl#L9", "duplicate_within_partition"),
    }
    assert legal["counts"]["records"] == {"in": 123, "kept": 121, "duplicate": 2, "quarantined": 0}
    # #7: full-width letters and digits are the same text after NFKC (and still English, not quarantined).
    _, finance = committed(store, "finance", WEEKS[0])
    assert ("landing/finance/2026-10-09/batch-01.jsonl#L3", "duplicate_within_partition") in {
        (d["source_uri"], d["reason"]) for d in jsonl(store, finance["files"]["duplicates"])}
    assert finance["counts"]["quarantined_by_reason"] == {}

    # Feedback rated >= 4 becomes training data of its domain, <= 2 or corrected goes to review; every
    # routed feedback line is accounted for exactly once: kept (with that usage), duplicate or quarantined.
    _, cs = committed(store, "customer_service", WEEKS[0])
    import io

    import pyarrow.parquet as pq

    kept = {r["source_uri"]: r for r in pq.read_table(io.BytesIO(store.get(cs["files"]["data"]))).to_pylist()
            if r["source"] == "feedback"}
    dup_uris = {d["source_uri"] for d in jsonl(store, cs["files"]["duplicates"])}
    quarantined_uris = {q["source_uri"] for q in jsonl(store, cs["files"]["quarantine"])}
    routed = _feedback_lines(store, "customer_service", WEEKS[0])
    assert routed and sum(1 for r in kept.values() if r["usage"] == "train") > 0
    for uri, r in routed.items():
        places = [uri in kept, uri in dup_uris, uri in quarantined_uris]
        assert places.count(True) == 1, (uri, places)
        if uri in kept:
            want = "review" if r.get("correction") or r["rating"] <= 2 else "train" if r["rating"] >= 4 else "hold"
            assert kept[uri]["usage"] == want and kept[uri]["rating"] == r["rating"], uri

    # Feedback that names no configured domain is quarantined once, and feedback counts reconcile.
    fb = json.loads(store.get(f"quarantine/feedback/{WEEKS[0]}/manifest.json"))
    total = sum(1 for _ in _all_feedback_lines(store, WEEKS[0]))
    assert sum(fb["routed"].values()) + fb["quarantined"] == total


def _all_feedback_lines(store, week: str):
    from pipelines.partition import Interval

    for day in Interval.parse(week).dates():
        for obj in store.list(f"landing/feedback/{day.isoformat()}/"):
            yield from (line for line in store.get(obj.key).decode().splitlines() if line.strip())


def _feedback_lines(store, domain: str, week: str) -> dict[str, dict]:
    from pipelines.partition import Interval

    out = {}
    for day in Interval.parse(week).dates():
        for obj in store.list(f"landing/feedback/{day.isoformat()}/"):
            for n, line in enumerate(store.get(obj.key).decode().split("\n"), start=1):
                if line.strip():
                    r = json.loads(line)
                    if r.get("domain") == domain:
                        out[f"{obj.key}#L{n}"] = r
    return out


def test_rerun_after_deleting_commit_marker_is_byte_identical(s3_bucket):
    config, store = store_and_config()
    load_sample(store, only=("legal", "medical", "feedback"))
    assert run_dag_week(WEEKS[0]).state == "success"
    first_commit, first = committed(store, "legal", WEEKS[0])
    assert run_dag_week(WEEKS[1]).state == "success"

    store.delete(f"curated/legal/{WEEKS[0]}/_commits/00000001.json")
    assert run_dag_week(WEEKS[0]).state == "success"
    again_commit, again = committed(store, "legal", WEEKS[0])
    assert again["version"] == first["version"]
    assert data_digest(store, again) == data_digest(store, first)
    assert again == first  # every manifest field is deterministic
    assert again_commit["n"] == 1 and again_commit["previous_version"] is None

    # A plain re-run with the commit in place publishes nothing new.
    assert run_dag_week(WEEKS[0]).state == "success"
    assert committed(store, "legal", WEEKS[0])[0]["n"] == 1


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"errcode":0}')

    def log_message(self, *args):
        pass


def test_failed_suite_blocks_publication_and_alerts(s3_bucket, tmp_path, monkeypatch):
    suite = json.loads(open("expectations/curated_batch.json").read())
    suite["expectations"].append({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 125}})
    suite_path = tmp_path / "strict.json"
    suite_path.write_text(json.dumps(suite))
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIPELINE__VALIDATION__SUITE", str(suite_path))
    monkeypatch.setenv("PIPELINE__ALERTS__WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    _Receiver.received.clear()
    try:
        config, store = store_and_config()
        load_sample(store, only=("legal", "finance"))  # week 1 keeps 121 legal, 125 finance rows
        run = run_dag_week(WEEKS[0])
    finally:
        server.shutdown()
    assert run.state == "failed"
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    legal = sorted(config.domains).index("legal")
    assert states[("partition.validate_batch", legal)] == "failed"
    assert states[("partition.publish_partition", legal)] == "upstream_failed"
    assert states[("republish_displaced", -1)] == "failed"  # the run fails, with the reason
    assert list(store.list("curated/legal/")) == []
    # Other domains are not blocked by legal's failure.
    assert committed(store, "finance", WEEKS[0])[1]["counts"]["records"]["kept"] == 125
    report = [o.key for o in store.list(f"quarantine/legal/{WEEKS[0]}/") if "validation-failed" in o.key]
    assert len(report) == 1
    failed = json.loads(store.get(report[0]))
    assert [f["expectation"] for f in failed["failed"]] == ["expect_table_row_count_to_be_between"]
    texts = [m["markdown"]["text"] for m in _Receiver.received]
    assert any("validate_batch" in t and "NOT published" in t for t in texts), texts
    assert list(store.list("staging/")) == []  # a failed run leaves no raw text behind either


def test_adding_a_domain_is_a_config_change(s3_bucket, tmp_path, monkeypatch):
    import yaml

    raw = yaml.safe_load(open("config/pipeline.yaml"))
    raw["domains"]["insurance"] = {"task": "classification", "languages": ["en"]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PIPELINE_CONFIG", str(path))
    config, store = store_and_config()
    store.put("landing/insurance/2026-10-05/claims.jsonl",
              b'{"text":"Claim for water damage filed","label":"claims"}\n{"text":"Claim for water  damage filed"}\n'
              b'{"text":"Policy renewal notice","label":"policy"}\n')
    run = run_dag_week(WEEKS[0])
    assert run.state == "success"
    commit, manifest = committed(store, "insurance", WEEKS[0])
    assert manifest["counts"]["records"] == {"in": 3, "kept": 2, "duplicate": 1, "quarantined": 0}
    digest = hashlib.sha256(store.get(manifest["files"]["data"])).hexdigest()
    assert manifest["digests"]["data.parquet"] == digest


def test_records_pass_through_every_governance_step_in_the_dag(s3_bucket, tmp_path):
    """HTML, personal data, a sensitive word and unlabelled text go through the DAG's whole chain."""
    from pipelines.label import LabellerConfig, train_labeller
    from pipelines.label.registry import publish_labeller

    config, store = store_and_config()
    labeller = train_labeller(
        texts=["The contract was signed.", "The lease agreement ends.", "The employee was dismissed.",
               "Overtime wages were withheld."],
        labels=["contract", "contract", "employment", "employment"], language="en", config=LabellerConfig(), seed=3)
    labeller.save(tmp_path / "legal")
    publish_labeller(store, tmp_path / "legal", name="legal")
    lines = [
        {"id": "g1", "text": "<p>Call 13800138000 about the <b>lease</b>.</p>", "label": "contract"},
        {"id": "g2", "text": "Call 13900139000 about the lease.", "label": "contract"},  # PII-only variant
        {"id": "g3", "text": "He ran a ponzi scheme through the firm."},                  # flagged, predicted
        {"id": "g4", "text": "The worker was let go without notice."},                     # predicted
        {"id": "g5", "text": "test"},                                                      # clean rule
    ]
    store.put("landing/legal/2026-10-05/governance.jsonl",
              "".join(json.dumps(line) + "\n" for line in lines).encode())
    run = run_dag_week(WEEKS[0])
    assert run.state == "success"
    tasks = {ti.task_id for ti in run.get_task_instances()}
    assert {"ingest_landing", "plan_shards", "clean_shard", "number_pii", "govern_shard", "label_shard",
            "find_duplicates", "finish_shard",
            *(f"partition.{t}" for t in ("auto_label", "validate_batch", "publish_partition"))} <= tasks
    commit, manifest = committed(store, "legal", WEEKS[0])
    assert manifest["counts"]["records"] == {"in": 5, "kept": 3, "duplicate": 1, "quarantined": 1}
    steps = manifest["steps"]
    assert [steps[s]["kept"] for s in ("standardize", "cleaned", "masked", "filtered", "dedup", "labelled")] == \
        [5, 4, 4, 4, 3, 3]
    import io

    import pyarrow.parquet as pq

    rows = {r["id"]: r for r in pq.read_table(io.BytesIO(store.get(manifest["files"]["data"]))).to_pylist()}
    assert rows["g1"]["text"].strip() == "Call [PHONE_1] about the lease."  # <p> became line breaks
    assert rows["g3"]["sensitive_flags"] == "fraud"
    assert {rows[i]["label_source"] for i in ("g3", "g4")} == {"predicted"} and rows["g1"]["label_source"] == "source"
    assert steps["labelled"]["counts"]["queued"] >= 1
    assert store.exists(f"review/legal/{WEEKS[0]}/queue-{commit['version']}.jsonl")


def test_a_sharded_week_in_the_dag_publishes_the_versions_of_an_unsharded_run(s3_bucket, tmp_path, monkeypatch):
    """ingest.shard_records=40: every sample domain's week runs in shards (clean_shard / govern_shard mapped over
    all of them); each partition's version (the digest of its data, quarantine and duplicates) is the one an
    unsharded run of the same landing files in this process publishes."""
    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.storage import LocalObjectStore
    from pipelines.weekly import PartitionRef, process_partition

    monkeypatch.setenv("PIPELINE__INGEST__SHARD_RECORDS", "40")
    monkeypatch.setenv("PIPELINE__INGEST__SHARD_BYTES", "4096")  # landing files parsed by several ingest_files
    config, store = store_and_config()
    load_sample(store, only=("legal", "finance", "feedback"))
    run = run_dag_week(WEEKS[0])
    assert run.state == "success"
    labels = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    shards = [m for (t, m) in labels if t == "govern_shard"]
    assert len(shards) > len(config.domains) and {labels[("govern_shard", m)] for m in shards} == {"success"}
    assert sorted(m for (t, m) in labels if t == "label_shard") == sorted(shards)  # one labelling task per shard
    assert {labels[("label_shard", m)] for m in shards} == {"success"}
    groups = [m for (t, m) in labels if t == "ingest_files"]
    assert len(groups) > len(config.domains) and {labels[("ingest_files", m)] for m in groups} == {"success"}
    assert sorted(m for (t, m) in labels if t == "finish_shard") == sorted(shards)  # dedup applied, labelled,
    assert {labels[("finish_shard", m)] for m in shards} == {"success"}            # validated per shard
    assert list(store.list("staging/")) == []

    monkeypatch.delenv("PIPELINE__INGEST__SHARD_RECORDS")
    monkeypatch.delenv("PIPELINE__INGEST__SHARD_BYTES")
    local_config = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": f"file://{tmp_path}"})
    assert local_config.ingest.shard_records > 1000  # the default: this week is not sharded
    local = LocalObjectStore(tmp_path / local_config.storage.bucket)
    for obj in store.list("landing/"):
        local.put(obj.key, store.get(obj.key))
    for domain in ("legal", "finance"):
        result = process_partition(config=local_config, store=local,
                                   part=PartitionRef(domain=domain, interval=Interval.parse(WEEKS[0])))
        _commit, manifest = committed(store, domain, WEEKS[0])
        assert (result["version"], result["counts"]) == (manifest["version"], manifest["counts"]), domain
        assert manifest["steps"]["ingest"]["records_in"] > 40  # really sharded
