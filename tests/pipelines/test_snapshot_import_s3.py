"""Bring your own model end to end on SeaweedFS: a snapshot uploaded to the object store, imported from its
``s3://`` prefix, DP-trained by a weekly run, promoted and served through ``pipelines.serving`` (INT8)."""

from __future__ import annotations

import json

import pytest

from benchmarks.snapshots import build_snapshot
from pipelines.artifacts import force_gate, load_ref, production_ref, promote, verify_artifact
from pipelines.cli import main as cli
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import RunRequest, base_ref, plan_run, train_run
from pipelines.serving.inference import classify, generate
from pipelines.serving.source import fetch_artifact, load_servable
from pipelines.partition import Interval
from pipelines.storage import open_store
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import upload_evaluation_sets

WEEK = Interval.parse("2026-10-04_2026-10-11")
SAMPLE = PROJECT_ROOT / "data" / "sample" / "landing"


def curate(config, store, domain: str) -> None:
    upload_evaluation_sets(config, store, only=(domain,))  # what `sample load` does: the gate's public set
    for folder in sorted((SAMPLE / domain).iterdir()):
        if WEEK.start.isoformat() <= folder.name < WEEK.end.isoformat():
            for path in sorted(folder.iterdir()):
                store.put(f"landing/{domain}/{folder.name}/{path.name}", path.read_bytes())
    assert process_partition(config=config, store=store, part=PartitionRef(domain=domain, interval=WEEK))["published"]


@pytest.fixture
def env(s3_bucket, tmp_path, monkeypatch, tiny_training):
    monkeypatch.setenv("PIPELINE__TRAINING__GRAD_SAMPLE_MODE", "bk")
    monkeypatch.setenv("PIPELINE__TRAINING__SECURE_MODE", "false")
    return s3_bucket, tmp_path


def upload(store, folder, prefix: str) -> None:
    for path in sorted(folder.iterdir()):
        store.put(f"{prefix}/{path.name}", path.read_bytes())


@pytest.mark.parametrize(("family", "domain", "method"), [("qwen2", "customer_service", "lora"),
                                                          ("xlm-roberta", "product_reviews", "head_bias")])
def test_import_from_s3_train_promote_and_serve_int8(env, monkeypatch, capsys, family, domain, method):
    bucket, tmp_path = env
    monkeypatch.setenv("PIPELINE__TRAINING__METHOD", method)
    config = load_config()
    store = open_store(config)
    curate(config, store, domain)
    upload(store, build_snapshot(family, tmp_path / "snapshot"), f"uploads/{family}")
    source = f"s3://{bucket}/uploads/{family}"

    assert cli(["model", "import-base", "--domain", domain, "--from", source, "--revision", "abc123",
                "--who", "test"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert (imported["model_type"], imported["method"], imported["source"]) == (family, method, source)
    base = base_ref(config=config, store=store, domain=domain)
    provenance = verify_artifact(store, base)["metrics"]["provenance"]
    assert provenance["licence"].startswith("Apache-2.0") and provenance["revision"] == "abc123"
    assert sorted(provenance["files"]) == sorted(p.name for p in (tmp_path / "snapshot").iterdir())

    request = RunRequest(domain=domain, kind="weekly", run_id=f"weekly-{domain}-s3", requested_by="test")
    trained = train_run(config=config, store=store, plan=plan_run(config=config, store=store, request=request))
    ref = load_ref(store, domain, trained.artifact_id)
    promote(store, domain, ref, gate=force_gate(reason="random-init test snapshot cannot beat the baseline"),
            who="test", why="import test")
    served = production_ref(store, domain)
    folder = fetch_artifact(store, domain=domain, artifact_id=served.artifact_id, cache_dir=tmp_path / "cache")
    servable = load_servable(folder, quantize_int8=True)
    if servable.task == "causal_lm":
        [answer] = generate(servable, ["How do I reset my password?"], [5])
        assert isinstance(answer.text, str) and answer.tokens <= 5
    else:
        [prediction] = classify(servable, ["质量很好"])
        assert prediction.label in servable.labels and set(prediction.scores) == set(servable.labels)


def test_s3_names_are_checked_before_anything_is_written(env, capsys):
    bucket, tmp_path = env
    config = load_config()
    store = open_store(config)
    store.put("uploads/bad/config.json", b"{}")
    store.put("uploads/bad/con.json", b"{}")  # a Windows device name: refused by pipelines.safepath
    assert cli(["model", "import-base", "--domain", "product_reviews", "--from", f"s3://{bucket}/uploads/bad"]) == 2
    err = capsys.readouterr().err
    assert "unsafe file name 'con.json'" in err and "Traceback" not in err
    assert cli(["model", "import-base", "--domain", "product_reviews", "--from", f"s3://{bucket}/uploads/none"]) == 2
    assert "no objects under this prefix" in capsys.readouterr().err
    assert base_ref(config=config, store=store, domain="product_reviews") is None
