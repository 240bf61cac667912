"""A console release with the real per-component identities on SeaweedFS: the console may only ask (review/),
ingestion releases and ingests (landing/), and the counts reconcile."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.console import actions, console_user
from pipelines.ops import list_quarantine, rerun_partition
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.release_requests import DONE, list_release_requests
from pipelines.security.audit import read_audit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import IDENTITIES_DIR_ENV, IDENTITY_ENV, StorageError, open_store
from pipelines.weekly import PartitionRef, process_partition

BUCKET = "mlops-test"  # the bucket the identities are scoped to (tests/conftest.py)


@pytest.fixture
def stores(s3_server, monkeypatch, request):
    """Config and the admin, ingestion and console stores on the session's SeaweedFS."""
    import torch

    torch.set_num_threads(1)
    [root] = [p for p in request.config.pluginmanager.get_plugins() if hasattr(p, "_service_env")]
    monkeypatch.setenv(IDENTITIES_DIR_ENV, str(Path(root._service_env()["PIPELINE_STATE_DIR"]) / "identities"))
    monkeypatch.delenv(IDENTITY_ENV, raising=False)
    monkeypatch.setenv("PIPELINE_BUCKET", BUCKET)
    config = load_config()
    return config, {"admin": open_store(config), "ingestion": open_store(config, identity="ingestion"),
                    "console": open_store(config, identity="console")}


def test_console_asks_ingestion_releases_and_the_record_is_curated(stores):
    config, store = stores
    # The identities share one bucket (and the dedup index persists): a week of its own, texts of its own.
    start = dt.date(2040, 1, 1) + dt.timedelta(weeks=random.randrange(5000))
    week = Interval.from_datetimes(start, start + dt.timedelta(days=7))
    day = (start + dt.timedelta(days=1)).isoformat()
    tag = uuid.uuid4().hex[:8]
    landing = f"landing/legal/{day}/a.jsonl"
    rows = [{"id": f"k1-{tag}", "text": f"The lease contract {tag} was renewed for two years."},
            {"id": f"z1-{tag}", "text": f"合同纠纷的处理办法 {tag}"},
            {"id": f"k2-{tag}", "text": f"The tenant {tag} paid the deposit late."}]
    store["admin"].put(landing, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    first = process_partition(config=config, store=store["ingestion"],
                              part=PartitionRef(domain="legal", interval=week, run_key="first"))
    assert first["published"] and first["counts"]["records"]["quarantined"] == 1

    console = store["console"]
    [found] = list_quarantine(config=config, store=console, domain="legal", interval=week.name)
    [entry] = found.records
    assert (entry.source_uri, entry.reason) == (f"{landing}#L2", "clean.language.zh")
    fixed = {"id": f"z1-{tag}", "text": f"How contract disputes {tag} are handled."}
    request = actions.release_quarantine(config=config, store=console, user=console_user("rob", "op"),
                                         domain="legal", interval=week.name, ids=[entry.id], why="translated",
                                         corrected=fixed)
    assert request.key.startswith(f"review/releases/legal/{week.name}/")
    with pytest.raises(StorageError, match="AccessDenied"):  # the console cannot forge raw input
        console.put(f"landing/legal/{day}/released-{request.request_id}.jsonl", b"{}\n")

    rerun = rerun_partition(config=config, store=store["ingestion"], domain="legal", interval=week.name,
                            run_key="rerun")
    assert rerun["published"] is True
    assert rerun["counts"]["records"] == {"in": 4, "kept": 3, "duplicate": 0, "quarantined": 1}
    commit = latest_commit(console, f"curated/legal/{week.name}")
    manifest = json.loads(console.get(commit.record["manifest"]))
    curated = {r["id"]: r["text"] for r in read_parquet_rows(console.get(manifest["files"]["data"]))}
    assert curated == {f"k1-{tag}": rows[0]["text"], f"k2-{tag}": rows[2]["text"], f"z1-{tag}": fixed["text"]}

    [done] = list_release_requests(store=console, domain="legal", interval=week.name)
    released = f"landing/legal/{day}/released-{request.request_id}.jsonl"
    assert (done.state, done.outcome["landing_files"], done.outcome["executed_by"]) == (DONE, [released], "rerun")
    audits = {e["key"]: e for e in read_audit(store["admin"], action="quarantine_release")}
    assert audits[done.outcome["audit"]]["who"] == "console:rob"
