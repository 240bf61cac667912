"""docs/RUNBOOK.md, tried step by step through the command line against a real SeaweedFS (and Airflow's CLI).

Each procedure runs as the on-call engineer would type it: ``python -m pipelines ...`` in a subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEEK = "2026-10-04_2026-10-11"
FILE = "landing/legal/2026-10-05/a.jsonl"


def cli(*args: str, ok: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m pipelines ARGS`` in a subprocess with this test's environment (bucket, credentials)."""
    res = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED="0"),
                         capture_output=True, text=True, timeout=timeout)
    if ok:
        assert res.returncode == 0, f"{args}: rc={res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture
def landed(s3_bucket):
    from pipelines.config import load_config
    from pipelines.storage import open_store

    config = load_config()
    store = open_store(config)
    lines = [json.dumps({"id": "k1", "text": "The lease contract was renewed for two years."}),
             json.dumps({"id": "z1", "text": "合同纠纷的处理办法"}, ensure_ascii=False),
             json.dumps({"id": "k2", "text": "The tenant paid the deposit late."})]
    store.put(FILE, ("\n".join(lines) + "\n").encode(), if_none_match=True)
    return config, store


def test_rerun_one_partition_twice_gives_the_same_version(landed):
    first = json.loads(cli("ingest", "--interval", WEEK, "--domain", "legal").stdout)["legal"]
    again = json.loads(cli("ops", "rerun", "--domain", "legal", "--interval", WEEK, "--who", "oncall").stdout)
    assert first["published"] is True
    assert (again["published"], again["reason"], again["version"], again["commit"]) == (
        False, "unchanged", first["version"], first["commit"])
    assert again["counts"]["records"] == {"in": 3, "kept": 2, "duplicate": 0, "quarantined": 1}
    bad = cli("ops", "rerun", "--domain", "legal", "--interval", "2026-10-11", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: interval '2026-10-11': use START_END")


def test_quarantine_inspect_release_and_rerun(landed, tmp_path):
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef, process_partition

    config, store = landed
    # The week's first run happens in-process (the scheduled run); on-call's steps below go through the CLI.
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=Interval.parse(WEEK)))
    [part] = json.loads(cli("ops", "quarantine", "list", "--domain", "legal", "--interval", WEEK).stdout)
    assert part["by_reason"] == {"clean.language.zh": 1}
    [entry] = part["records"]
    assert (entry["source_uri"], entry["released"]) == (f"{FILE}#L2", None)
    shown = json.loads(cli("ops", "quarantine", "show", "--domain", "legal", "--interval", WEEK,
                           "--id", entry["id"]).stdout)
    assert shown["original"] == {"id": "z1", "text": "合同纠纷的处理办法"}

    fix = tmp_path / "z1.json"
    fix.write_text(json.dumps({"id": "z1", "text": "How contract disputes are handled."}))
    released = json.loads(cli("ops", "quarantine", "release", "--domain", "legal", "--interval", WEEK,
                              "--id", entry["id"], "--why", "translated (ticket 42)", "--who", "alice",
                              "--from-file", str(fix)).stdout)
    [landing_key] = released["landing_files"]
    assert landing_key.startswith("landing/legal/2026-10-05/released-")
    again = cli("ops", "quarantine", "release", "--domain", "legal", "--interval", WEEK, "--id", entry["id"],
                "--why", "again", "--who", "bob", ok=False)
    assert again.returncode == 2 and "already released" in again.stderr

    rerun = json.loads(cli("ops", "rerun", "--domain", "legal", "--interval", WEEK).stdout)
    assert rerun["published"] is True and rerun["counts"]["records"]["kept"] == 3
    show = json.loads(cli("show", "--domain", "legal", "--interval", WEEK).stdout)
    assert show["commit"]["changes"]["added"][0]["id"] == "z1"
    audit = json.loads(cli("security", "audit", "--action", "quarantine_release").stdout)
    assert [(a["who"], a["why"]) for a in audit] == [("alice", "translated (ticket 42)")]


def test_model_rollback(landed, tmp_path, monkeypatch):
    from pipelines.artifacts import build_manifest, force_gate, promote, push_artifact

    config, store = landed
    # Only model approvers move the production pointer by hand (security.model_approvers).
    monkeypatch.setenv("PIPELINE__SECURITY__MODEL_APPROVERS", "[oncall]")
    ids = []
    for n, seed in enumerate(("first", "second"), start=1):
        folder = tmp_path / seed
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights-" + seed.encode() * 20)
        (folder / "config.json").write_text(json.dumps({"seed": seed}))
        build_manifest(folder, domain="legal", task="classification", kind="weekly", version=f"1.{n}", parent=None,
                       data=[], code_version="test", dp=None, metrics={"macro_f1": 0.8}, created_by="test")
        ref = push_artifact(store, folder, domain="legal")
        promote(store, "legal", ref, gate=force_gate(reason="setup"), who="test", why="setup")
        ids.append(ref.artifact_id)
    record = json.loads(cli("model", "rollback", "--domain", "legal", "--why", "accuracy dropped", "--who",
                            "oncall").stdout)
    assert (record["action"], record["artifact_id"], record["previous_artifact_id"]) == ("rollback", ids[0], ids[1])
    refused = cli("model", "rollback", "--domain", "legal", "--why", "x", "--who", "intruder", ok=False)
    assert refused.returncode != 0 and "approver" in refused.stderr and "Traceback" not in refused.stderr
    shown = json.loads(cli("model", "show", "--domain", "legal").stdout)
    assert shown["production"]["artifact_id"] == ids[0]
    assert "ok: legal " + ids[0] in cli("model", "verify", "--domain", "legal").stdout
    audit = json.loads(cli("security", "audit", "--action", "rollback").stdout)
    assert [(a["who"], a["why"]) for a in audit] == [("oncall", "accuracy dropped")]


def test_privacy_ledger_and_budget(landed):
    from pipelines.privacy.ledger import plan_run, reserve_budget

    config, store = landed
    pconfig = config.for_domain("legal").require_privacy()
    plan = plan_run(config=pconfig, store=store, domain="legal", kind="weekly", partitions=[WEEK],
                    sample_rate=0.05, steps=40)
    reserve_budget(config=pconfig, store=store, plan=plan, run_id="weekly-legal-runbook")
    ledger = cli("privacy", "ledger", "--domain", "legal").stdout.splitlines()
    [row] = [line.split() for line in ledger if line.startswith("weekly-legal-runbook")]
    assert row[:4] == ["weekly-legal-runbook", "weekly", "granted", WEEK]
    budget = json.loads(cli("privacy", "budget", "--domain", "legal", "--json", "--ledger-only").stdout)
    [spend] = budget["partitions"]
    assert spend["partition"] == WEEK and spend["remaining"] == pytest.approx(2.0 - spend["epsilon"])


def test_backfill_a_range_dry_run(airflow_db):
    """`airflow backfill create` over the sample's four weeks (the DAG must be serialized in the DB first)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    res = subprocess.run([airflow, "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run([airflow, "backfill", "create", "--dag-id", "weekly_ingest", "--from-date", "2026-10-04",
                          "--to-date", "2026-10-25", "--reprocess-behavior", "failed", "--dry-run"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    planned = [line.split("|")[1].strip() for line in res.stdout.splitlines() if line.startswith("| 2026-")]
    assert planned == [f"2026-10-{d:02d} 00:00:00+00:00" for d in (4, 11, 18, 25)]
    # Each logical date is the start of a week's data interval [Sunday, next Sunday).
    assert [dt.date.fromisoformat(p[:10]).weekday() for p in planned] == [6, 6, 6, 6]
