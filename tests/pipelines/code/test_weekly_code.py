"""A code snapshot through the weekly chain on a local folder store: scrubbed, deduplicated, validated."""

from __future__ import annotations

import json

import pytest
from code_fakes import planted, secret_file, snapshot_tar, snapshot_zip

from pipelines.config import load_config
from pipelines.partition import Interval
from pipelines.privacy.records import hash_subject
from pipelines.publish import latest_commit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

WEEK = Interval.parse("2026-10-04_2026-10-11")
UTIL = "".join(f"def scale{i}(x):\n    return x * {i}\n\n\n" for i in range(12))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket), tmp_path


def test_snapshots_are_scrubbed_deduplicated_and_published(env):
    config, store, root = env
    values = planted()
    store.put("landing/code/2026-10-05/billing.tar.gz", snapshot_tar({
        "billing/app.py": secret_file(values), "billing/util.py": UTIL,
        "billing/vendor/six.py": "x = 1\n", "billing/logo.png": b"\x89PNG\x00\x00"}))
    store.put("landing/code/2026-10-06/shipping.zip", snapshot_zip({"util.py": UTIL, "ship.py": "import os\n\nPATH = os.sep\n"}))
    result = process_partition(config=config, store=store, part=PartitionRef(domain="code", interval=WEEK))
    assert result["published"] is True
    commit = latest_commit(store, f"curated/code/{WEEK.name}")
    manifest = json.loads(store.get(commit.record["manifest"]))
    rows = read_parquet_rows(store.get(manifest["files"]["data"]))
    assert sorted(r["subject_sha256"] for r in rows) == sorted(
        hash_subject(s, domain="code").hex() for s in ("billing/billing/app.py", "billing/billing/util.py",
                                                       "shipping/ship.py"))
    assert {r["label"] for r in rows} == {"python"} and all(r["question"] and r["answer"] for r in rows)
    # shipping/util.py is billing/util.py: the SHA-256 dedup drops it (file-level exact dedup).
    assert manifest["counts"]["records"] == {"in": 6, "kept": 3, "duplicate": 1, "quarantined": 2}
    assert manifest["counts"]["quarantined_by_reason"] == {"binary": 1, "vendored": 1}
    app = next(r for r in rows if "<SECRET_AWS_KEY_1>" in r["text"])
    compile(app["text"], "app.py", "exec")
    # No planted value in any object written (staging is gone; encryption is off in this config).
    leaked = [(p.relative_to(root).as_posix(), k) for p in root.rglob("*") if p.is_file()
              for k, v in values.items() if v.encode() in p.read_bytes() and "/landing/" not in p.as_posix()]
    assert leaked == []
    reports = [o.key for o in store.list(f"quarantine/code/{WEEK.name}/") if "code-report-" in o.key]
    assert len(reports) == 2
