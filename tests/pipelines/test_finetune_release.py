"""What a training run releases: numbers computed on a public evaluation set only, no training loss, no exact
lineage, the DP settings it really used; and what it keeps on the training host (nothing, once pushed)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pipelines.artifacts import load_ref, verify_artifact
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import RunRefused, RunRequest, build_domain_base, plan_run, run_domain, train_run
from pipelines.finetune.run import _seed, lineage_key, run_folder
from pipelines.partition import Interval
from pipelines.storage import LocalObjectStore
from pipelines.train.evaluate import evaluation_digest
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import EVALUATION, upload_evaluation_sets

WEEK = Interval.parse("2026-10-04_2026-10-11")
SAMPLE = PROJECT_ROOT / "data" / "sample" / "landing"


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_training):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path / 'store'}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / "store" / config.storage.bucket)


def curate(config, store, domain: str) -> None:
    for folder in sorted((SAMPLE / domain).iterdir()):
        if WEEK.start.isoformat() <= folder.name < WEEK.end.isoformat():
            for path in sorted(folder.iterdir()):
                store.put(f"landing/{domain}/{folder.name}/{path.name}", path.read_bytes())
    assert process_partition(config=config, store=store, part=PartitionRef(domain=domain, interval=WEEK))["published"]
    build_domain_base(config=config, store=store, domain=domain, who="test", size="tiny")


def request(domain: str, n: int = 1) -> RunRequest:
    return RunRequest(domain=domain, kind="weekly", run_id=f"weekly-{domain}-{n}", requested_by="test")


def test_a_run_publishes_only_public_evaluation_numbers_and_keeps_nothing_on_the_host(env):
    config, store = env
    curate(config, store, "legal")
    upload_evaluation_sets(config, store, only=("legal",))
    public = [json.loads(line) for line in (EVALUATION / "legal.jsonl").read_text(encoding="utf-8").splitlines()]
    examples = [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in public]

    trained = run_domain(config=config, store=store, request=request("legal"), who="test")
    ref = load_ref(store, "legal", trained.artifact_id)
    manifest = verify_artifact(store, ref)
    metrics = manifest["metrics"]
    # Every released number is on the public set: its size, digest, and the two baselines on the same split.
    assert metrics["evaluation"] == "public" and metrics["evaluation_set"] == "evaluation/legal/eval.jsonl"
    assert metrics["eval_examples"] == metrics["n"] == len(public) == 60
    assert metrics["split"] == metrics["baseline"]["split"] == metrics["trivial"]["split"] == \
        evaluation_digest(examples)
    labels = [r["label"] for r in public]
    majority = max(sorted(set(labels)), key=labels.count)
    assert metrics["trivial"] == {"name": "majority class", "label": majority, "n": 60,
                                  "accuracy": round(labels.count(majority) / 60, 6), "split": metrics["split"]}
    assert "train_examples" not in metrics
    # No training loss anywhere; no exact record set (digest, row count) in the public manifest.
    files = {name: store.get(f"{ref.root}/{name}").decode("utf-8") for name in ("history.json", "metrics.json",
                                                                               "model_card.md")}
    assert all("train_loss" not in text for text in files.values())
    assert "Published outside DP" in files["model_card.md"] and "one record" in files["model_card.md"]
    # ... which stays in the private store, written by training.
    lineage = json.loads(store.get(lineage_key("legal", "weekly-legal-1")))
    assert lineage["artifact_id"] == trained.artifact_id
    (exact,) = lineage["partitions"]
    assert set(exact) == {"interval", "version", "digest", "rows"} and exact["rows"] > 0
    assert manifest["data"]["partitions"] == [{"interval": WEEK.name, "version": exact["version"]}]
    # What training used, from the privacy config.
    assert (manifest["dp"]["secure_mode"], manifest["dp"]["poisson_sampling"]) == (False, True)
    # Pushed: no seed, plaintext examples or checkpoints stay on the training host.
    assert not run_folder(config.for_domain("legal").training, "weekly-legal-1").exists()


def test_a_slot_without_a_public_evaluation_set_is_refused(env):
    config, store = env
    curate(config, store, "legal")
    plan = plan_run(config=config, store=store, request=request("legal"))
    with pytest.raises(RunRefused, match=r"evaluation/legal/eval.jsonl is not in the object store.*sample load"):
        train_run(config=config, store=store, plan=plan)
    unconfigured = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": config.storage.endpoint_url,
                                        "PIPELINE__ARTIFACTS__EVALUATION": "{}"})
    with pytest.raises(RunRefused, match=r"no public evaluation set is configured.*artifacts.evaluation.legal"):
        train_run(config=unconfigured, store=store, plan=plan)
    assert not list(store.list("models/legal/artifacts/"))


def test_the_trivial_gate_refuses_a_model_that_learned_nothing(env, monkeypatch):
    config, store = env
    curate(config, store, "legal")
    upload_evaluation_sets(config, store, only=("legal",))
    monkeypatch.setenv("PIPELINE__ARTIFACTS__TRIVIAL_GATE", "true")
    monkeypatch.setenv("PIPELINE__ARTIFACTS__BASELINE_MARGIN", "{classification: 0.5}")
    config = load_config()
    trained = run_domain(config=config, store=store, request=request("legal"), who="test")
    assert trained.promoted is False
    assert (trained.gate["trivial_metric"], trained.gate["margin"]) == ("accuracy", 0.5)
    assert "does not beat its trivial baseline" in trained.gate["reason"]


def test_delta_above_one_tenth_over_n_is_refused_at_plan_time(env, tmp_path, monkeypatch):
    config, store = env
    curate(config, store, "legal")
    text = (PROJECT_ROOT / "config" / "pipeline.yaml").read_text(encoding="utf-8")
    text = text.replace("privacy: {epsilon: 2.0, delta: 1.0e-5}", "privacy: {epsilon: 2.0, delta: 1.0e-3}")
    (tmp_path / "pipeline.yaml").write_text(text, encoding="utf-8")
    loose = load_config(tmp_path / "pipeline.yaml")
    with pytest.raises(RunRefused, match=r"legal: δ=0.001 is too large for a run over \d+ records of legal"):
        plan_run(config=loose, store=store, request=request("legal"))
    assert not list(store.list("privacy/ledger/"))


def test_the_noise_seed_is_a_secret_file(tmp_path):
    from dataclasses import replace

    training = replace(load_config().for_domain("legal").training, seed=0)
    folder = tmp_path / "run"
    seed = _seed(folder, training)
    assert stat.S_IMODE((folder / "seed").stat().st_mode) == 0o600
    assert _seed(folder, training) == seed  # a resumed attempt replays the same noise
    assert isinstance(seed, int) and Path(folder / "seed").read_text() == str(seed)


def test_training_honours_privacy_secure_mode_the_one_source(env, monkeypatch):
    """privacy.secure_mode (what the ledger records) is what training uses: on, without torchcsprng on this host,
    the run fails before it reads any private record or trains."""
    from pipelines.config import ConfigError

    config, store = env
    curate(config, store, "legal")
    upload_evaluation_sets(config, store, only=("legal",))
    plan = plan_run(config=config, store=store, request=request("legal"))
    monkeypatch.setenv("PIPELINE__PRIVACY__SECURE_MODE", "true")
    with pytest.raises(ConfigError, match="privacy.secure_mode is true but torchcsprng"):
        train_run(config=load_config(), store=store, plan=plan)
    assert not run_folder(config.for_domain("legal").training, plan.run_id).exists()
