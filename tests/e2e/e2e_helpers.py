"""Helpers for end-to-end tests: load the bundled sample into a bucket, run DAG weeks, read results."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
UTC = dt.timezone.utc
WEEKS = ["2026-10-04_2026-10-11", "2026-10-11_2026-10-18", "2026-10-18_2026-10-25", "2026-10-25_2026-11-01"]


def store_and_config():
    from pipelines.config import load_config
    from pipelines.storage import open_store

    config = load_config()
    return config, open_store(config.storage)


def load_sample(store, *, only: tuple[str, ...] = ()) -> int:
    """The sample's landing files (their count is returned) and its public evaluation sets, as `sample load` does."""
    from _evaluation import upload_evaluation_sets
    from pipelines.config import load_config

    upload_evaluation_sets(load_config(), store, only=only)
    n = 0
    for path in sorted(p for p in (SAMPLE / "landing").rglob("*") if p.is_file()):
        rel = path.relative_to(SAMPLE / "landing").as_posix()
        if only and rel.split("/", 1)[0] not in only:
            continue
        store.put(f"landing/{rel}", path.read_bytes(), if_none_match=True)
        n += 1
    return n


def run_dag_week(week: str):
    """dag.test() for one week: a manual run at the week's end date gets the data interval [start, end)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "weekly_ingest.py"))
    assert not bag.import_errors, bag.import_errors
    end = dt.date.fromisoformat(week.split("_")[1])
    return bag.get_dag("weekly_ingest").test(logical_date=dt.datetime(end.year, end.month, end.day, tzinfo=UTC))


def committed(store, domain: str, week: str) -> tuple[dict, dict]:
    from pipelines.publish import latest_commit

    commit = latest_commit(store, f"curated/{domain}/{week}")
    assert commit is not None, f"{domain} {week} not published"
    return commit.record, json.loads(store.get(commit.record["manifest"]))


def data_digest(store, manifest: dict) -> str:
    return hashlib.sha256(store.get(manifest["files"]["data"])).hexdigest()


def jsonl(store, key: str) -> list[dict]:
    return [json.loads(line) for line in store.get(key).decode().splitlines() if line]
