"""End to end: a promoted causal LM answers through the serving API, a user rates the answer 5, and the
real weekly_ingest DAG (dag.test, real SeaweedFS) turns that rating into a training record of the domain.

Artifacts are built, pushed and promoted with the real stages (``pipelines.train.models``,
``pipelines.artifacts``); the service is the one ``python -m pipelines serve run`` builds
(``pipelines.serving.build_service``: tokens, input lexicon, feedback landing prefix from the config).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os

import pytest

from e2e_helpers import committed, run_dag_week, store_and_config

pytestmark = pytest.mark.usefixtures("airflow_db")

DOMAIN = "customer_service"
TOKEN = "e2e-cs-token-0123456789abcdef"
QA = [f"{q}\n{a}" for q in ("where is my parcel", "refund my order please", "how do i change my address")
      for a in ("your parcel ships tomorrow", "we will refund it today", "open your account settings")]


def week_of(day: dt.date) -> str:
    """The weekly_ingest interval ``[Sunday, next Sunday)`` holding ``day``."""
    start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
    return f"{start.isoformat()}_{(start + dt.timedelta(days=7)).isoformat()}"


def test_week_of():
    assert week_of(dt.date(2026, 10, 4)) == "2026-10-04_2026-10-11"  # a Sunday starts its week
    assert week_of(dt.date(2026, 10, 10)) == "2026-10-04_2026-10-11"


def test_rated_answer_becomes_a_training_record(s3_bucket, tmp_path):
    import torch
    from fastapi.testclient import TestClient

    from pipelines.artifacts import build_manifest, force_gate, promote, push_artifact
    from pipelines.serving import build_service, override_serving
    from pipelines.serving.app import create_app
    from pipelines.train.models import build_base_model

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, store = store_and_config()
    folder = build_base_model(task="causal_lm", texts_or_series=QA, out_dir=tmp_path / "lm", size="tiny", seed=3)
    build_manifest(folder, domain=DOMAIN, task="causal_lm", kind="monthly", version="1.0", parent=None, data=[],
                   code_version="e2e", dp=None, metrics={}, created_by="e2e")
    prefix = config.artifacts.prefix
    ref = push_artifact(store, folder, domain=DOMAIN, prefix=prefix)
    promote(store, DOMAIN, ref, gate=force_gate(reason="e2e"), who="e2e", why="e2e", prefix=prefix)

    serving = override_serving(config=config, domains=(DOMAIN,), cache_dir=str(tmp_path / "cache"), poll_seconds=3600)
    service = build_service(config=config, store=store, serving=serving, environ={serving.tokens_env: f"{TOKEN}={DOMAIN}"},
                            output_screen=None)
    service.start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    question = "where is my parcel, call me at 13812345678"
    try:
        with TestClient(create_app(service)) as client:
            r = client.post(f"/v1/{DOMAIN}/generate", json={"prompt": question, "max_new_tokens": 8}, headers=auth)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert (answer["model_version"], answer["artifact_id"], answer["promotion"]) == ("1.0", ref.artifact_id, 1)
            fb = client.post(f"/v1/{DOMAIN}/feedback", json={"request_id": answer["request_id"], "rating": 5},
                             headers=auth)
            assert fb.status_code == 201, fb.text
    finally:
        service.stop()

    key = fb.json()["stored"]
    day = dt.date.fromisoformat(key.split("/")[-2])
    assert key == f"{config.storage.landing_prefix}/feedback/{day.isoformat()}/{answer['request_id']}.jsonl"
    landed = json.loads(store.get(key))
    assert landed["question"] == "where is my parcel, call me at [PHONE_1]"

    week = week_of(day)
    run = run_dag_week(week)
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}

    import pyarrow.parquet as pq

    _commit, manifest = committed(store, DOMAIN, week)
    rows = pq.read_table(io.BytesIO(store.get(manifest["files"]["data"]))).to_pylist()
    mine = [r for r in rows if r["request_id"] == answer["request_id"]]
    assert len(mine) == 1, [r["request_id"] for r in rows]
    record = mine[0]
    assert (record["id"], record["domain"], record["source"], record["usage"], record["rating"]) == (
        f"fb-{answer['request_id']}", DOMAIN, "feedback", "train", 5)
    # A random-init model's answer is arbitrary bytes; weekly cleaning strips its control characters.
    from pipelines.clean import clean_text
    from pipelines.governance import domain_rules

    cleaned = clean_text(landed["answer"], domain_rules(config, DOMAIN).clean)
    assert (record["model_version"], record["question"], record["answer"]) == ("1.0", landed["question"], cleaned)
    assert record["text"] == f"{landed['question']}\n{cleaned}"
    assert landed["answer"] == answer["text"] and landed["model_version"] == "1.0" and landed["rating"] == 5
    assert record["correction"] is None and record["source_uri"] == f"{key}#L1"
    assert "13812345678" not in json.dumps(record, ensure_ascii=False, default=str)
