"""Training runs end to end on a local folder store: curated partitions -> DP run -> artifact -> gate -> production."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.artifacts import current_production, load_ref, promotion_history, verify_artifact
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import (
    RunRefused, RunRequest, build_domain_base, domains_to_train, plan_run, promote_run, run_domain, train_run,
)
from pipelines.partition import Interval
from pipelines.privacy import RecordSet, budget_report, read_ledger
from pipelines.publish import partition_prefix, read_committed_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import upload_evaluation_sets

WEEKS = [Interval.parse("2026-10-04_2026-10-11"), Interval.parse("2026-10-11_2026-10-18")]
SAMPLE = PROJECT_ROOT / "data" / "sample" / "landing"


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_training):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path / 'store'}")
    config = load_config()
    store = LocalObjectStore(tmp_path / "store" / config.storage.bucket)
    upload_evaluation_sets(config, store)
    return config, store


def land_week(store, domain: str, interval: Interval) -> None:
    for folder in sorted((SAMPLE / domain).iterdir()):
        day = folder.name
        if interval.start.isoformat() <= day < interval.end.isoformat():
            for path in sorted(folder.iterdir()):
                store.put(f"landing/{domain}/{day}/{path.name}", path.read_bytes())


def curate(config, store, domain: str, interval: Interval) -> None:
    land_week(store, domain, interval)
    assert process_partition(config=config, store=store, part=PartitionRef(domain=domain, interval=interval))["published"]


def request(domain: str, kind: str, n: int, **extra) -> RunRequest:
    return RunRequest(domain=domain, kind=kind, run_id=f"{kind}-{domain}-{n}", requested_by="test", **extra)


def test_weekly_runs_monthly_retrain_versions_ledger_and_gate(env):
    config, store = env
    curate(config, store, "legal", WEEKS[0])
    base = build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    assert domains_to_train(config=config, store=store, kind="weekly", only="legal") == ["legal"]

    first = run_domain(config=config, store=store, request=request("legal", "weekly", 1), who="test")
    assert first.promoted is True and first.version == "1.0"
    ref = load_ref(store, "legal", first.artifact_id)
    manifest = verify_artifact(store, ref)
    assert manifest["parent"] == base["artifact_id"]
    assert [p["interval"] for p in manifest["data"]["partitions"]] == [WEEKS[0].name]
    privacy = config.for_domain("legal").require_privacy()
    assert manifest["dp"]["epsilon"] <= privacy.weekly_epsilon + 1e-9
    assert manifest["dp"]["steps"] == first.steps > 0
    assert {"accuracy", "macro_f1", "baseline"} <= set(manifest["metrics"])
    assert current_production(store, "legal").artifact_id == first.artifact_id
    for name in ("model_card.md", "training_curve.svg", "epsilon.svg", "model.safetensors", "tokenizer.json"):
        assert name in manifest["files"], name

    # Nothing new: no weekly run; the ledger has one counted entry for week 1.
    assert domains_to_train(config=config, store=store, kind="weekly", only="legal") == []
    with pytest.raises(RunRefused, match="nothing to train on"):
        plan_run(config=config, store=store, request=request("legal", "weekly", 2))
    records = read_ledger(config=privacy, store=store, domain="legal")
    assert [(r.entry.run_id, r.status, r.entry.partitions) for r in records] == [
        ("weekly-legal-1", "completed", (WEEKS[0].name,))]

    # A new week: the next weekly run reads only it and starts from production (a minor version).
    curate(config, store, "legal", WEEKS[1])
    plan = plan_run(config=config, store=store, request=request("legal", "weekly", 3))
    assert [p.interval for p in plan.partitions] == [WEEKS[1].name]
    assert plan.start.to_dict() == {"artifact_id": first.artifact_id, "version": "1.0", "root": ref.root,
                             "from": "production"}
    trained = train_run(config=config, store=store, plan=plan)
    assert trained.version == "1.1"
    assert train_run(config=config, store=store, plan=plan) == trained  # a rerun of a finished run changes nothing
    promoted = promote_run(config=config, store=store, trained=trained, who="test")
    assert promoted.gate["metric"] == "accuracy"
    assert promoted.promoted is promoted.gate["passed"]

    # The monthly retrain reads every partition again, from the base model: a major version.
    production_before = current_production(store, "legal").artifact_id
    monthly = run_domain(config=config, store=store, request=request("legal", "monthly", 1), who="test")
    assert monthly.version == "2.0"
    monthly_manifest = verify_artifact(store, load_ref(store, "legal", monthly.artifact_id))
    assert monthly_manifest["parent"] == base["artifact_id"]
    # The gate compares with production evaluated on the retrain's own held-out split, not the base model.
    assert monthly_manifest["metrics"]["baseline"]["artifact_id"] == production_before
    assert monthly_manifest["metrics"]["baseline"]["n"] == monthly_manifest["metrics"]["eval_examples"]
    spent = {s.partition: s for s in budget_report(config=privacy, store=store, domain="legal")}
    assert set(spent) == {WEEKS[0].name, WEEKS[1].name}
    for s in spent.values():  # each partition: one weekly run and the monthly retrain, composed
        assert set(s.runs) == {f"weekly-legal-{1 if s.partition == WEEKS[0].name else 3}", "monthly-legal-1"}
        assert s.weekly_epsilon <= privacy.weekly_budget and s.monthly_epsilon <= privacy.monthly_budget
        assert s.epsilon <= privacy.epsilon
    history = promotion_history(store, "legal")
    assert all(r.who == "test" for r in history)


def test_over_budget_run_is_refused_before_anything_is_written(env):
    from pipelines.privacy import plan_run as plan_privacy, reserve_budget

    config, store = env
    curate(config, store, "medical", WEEKS[0])
    build_domain_base(config=config, store=store, domain="medical", who="test", size="tiny")
    privacy = config.for_domain("medical").require_privacy()
    # An earlier retrain spent the whole monthly share of the week's records.
    week = read_committed_rows(store, partition_prefix(config.storage.curated_prefix, "medical", WEEKS[0].name))[1]
    earlier = plan_privacy(config=replace(privacy, monthly_epsilon=privacy.monthly_budget), store=store,
                           domain="medical", kind="monthly", partitions=[WEEKS[0].name], sample_rate=0.1, steps=50,
                           records=RecordSet.of(r["content_sha256"] for r in week))
    reserve_budget(config=privacy, store=store, plan=earlier, run_id="monthly-medical-0")
    with pytest.raises(RunRefused, match=r"monthly share exceeded"):
        plan_run(config=config, store=store, request=request("medical", "monthly", 1))
    assert [r.entry.run_id for r in read_ledger(config=privacy, store=store, domain="medical")] == ["monthly-medical-0"]
    assert not list(store.list("models/medical/"))
    # A per-run epsilon above the weekly share is refused as well, with the share in the message.
    with pytest.raises(RunRefused, match="exceeds its share"):
        plan_run(config=config, store=store, request=request("medical", "weekly", 1, epsilon=privacy.epsilon))


def test_dry_run_reserves_nothing(env):
    config, store = env
    curate(config, store, "legal", WEEKS[0])
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    plan = plan_run(config=config, store=store, request=request("legal", "weekly", 1, dry_run=True))
    assert plan.dry_run is True and plan.noise_multiplier > 0
    assert train_run(config=config, store=store, plan=plan).skipped == "dry run"
    assert read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal") == []


def test_missing_base_model_says_how_to_build_one(env):
    config, store = env
    curate(config, store, "legal", WEEKS[0])
    with pytest.raises(RunRefused, match="build-domain-base --domain legal"):
        plan_run(config=config, store=store, request=request("legal", "weekly", 1))


def test_a_domain_without_public_sample_text_is_refused_a_built_base_and_told_to_import_one(env):
    from pipelines.finetune import build_domain_base

    config, store = env
    assert "code" in config.domains and not (SAMPLE / "code").exists()
    with pytest.raises(RunRefused, match=r"^code: the bundled sample has no public text .* model import-base "
                                         r"--domain code --from SNAPSHOT_DIR$"):
        build_domain_base(config=config, store=store, domain="code", who="test")
    assert list(store.list("models/")) == []


def test_a_delta_too_large_for_the_records_read_is_refused_with_what_to_change(env, monkeypatch):
    import pipelines.finetune.plan as plan_module

    config, store = env
    curate(config, store, "legal", WEEKS[0])
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    real = plan_module.slot_configs
    monkeypatch.setattr(plan_module, "slot_configs",
                        lambda *, config, name: real(config=config, name=name)._replace(
                            privacy=replace(real(config=config, name=name).privacy, delta=0.01)))
    with pytest.raises(RunRefused, match=r"δ=0.01 is too large for a run over \d+ records of legal.*"
                                         r"Set domains.legal.privacy.delta to"):
        plan_run(config=config, store=store, request=request("legal", "weekly", 1))
    assert read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal") == []
