"""End to end: the real training DAGs (dag.test) against a real SeaweedFS, from curated data to promoted artifacts."""

from __future__ import annotations

import datetime as dt

import pytest

from e2e_helpers import ROOT, UTC, load_sample, store_and_config

pytestmark = pytest.mark.usefixtures("airflow_db")

WEEK = "2026-10-04_2026-10-11"


def run_dag(dag_id: str, conf: dict, when: dt.datetime):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id).test(logical_date=when, run_conf=conf)


def published_week(domains: tuple[str, ...]):
    """The sample's first week published for ``domains``; returns (config, store)."""
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef, process_partition

    config, store = store_and_config()
    load_sample(store, only=domains)
    for domain in domains:
        part = PartitionRef(domain=domain, interval=Interval.parse(WEEK))
        assert process_partition(config=config, store=store, part=part)["published"]
    return config, store


def task_states(run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return {k: sorted(v) for k, v in states.items()}


def test_finetune_and_retrain_dags_promote_a_classifier_and_a_causal_lm(s3_bucket, tiny_training):
    from pipelines.artifacts import current_production, load_ref, promotion_history, verify_artifact
    from pipelines.finetune import build_domain_base
    from pipelines.privacy import read_ledger

    config, store = published_week(("legal", "customer_service"))
    for domain in ("legal", "customer_service"):
        build_domain_base(config=config, store=store, domain=domain, who="test", size="tiny")

    # domain_finetune with no domain param: every domain with new data (legal and customer_service here).
    run = run_dag("domain_finetune", {"domain": "", "epsilon": None, "dry_run": False},
                  dt.datetime(2026, 10, 11, 1, tzinfo=UTC))
    assert str(run.state) == "success", task_states(run)
    assert task_states(run) == {"list_domains": ["success"], "train_domain.plan_finetune": ["success"] * 2,
                                "train_domain.train_model": ["success"] * 2,
                                # Neither domain is in artifacts.require_approval: the approval step passes at once.
                                "train_domain.approve_promotion": ["success"] * 2,
                                "train_domain.promote_model": ["success"] * 2}
    for domain, task, metric in (("legal", "classification", "accuracy"),
                                 ("customer_service", "causal_lm", "perplexity")):
        record = current_production(store, domain)
        assert record is not None and record.action == "promote" and record.version == "1.0", domain
        assert record.gate["metric"] == metric and record.gate["passed"] is True
        manifest = verify_artifact(store, load_ref(store, domain, record.artifact_id))
        assert manifest["task"] == task and manifest["kind"] == "weekly"
        assert [p["interval"] for p in manifest["data"]["partitions"]] == [WEEK]
        ledger = read_ledger(config=config.for_domain(domain).require_privacy(), store=store, domain=domain)
        assert [(r.entry.kind, r.status) for r in ledger] == [("weekly", "completed")]
        assert manifest["dp"]["ledger_key"].endswith(f"{ledger[0].entry.run_id}.json")

    # The monthly retrain, for legal only: from the base model, a major version, gated against 1.0.
    run = run_dag("monthly_full_retrain", {"domain": "legal", "epsilon": None, "dry_run": False},
                  dt.datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert str(run.state) == "success", task_states(run)
    history = promotion_history(store, "legal")
    newest = load_ref(store, "legal", history[0].artifact_id) if history[0].action == "promote" else None
    monthly = [r for r in read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal")
               if r.entry.kind == "monthly"]
    assert [r.status for r in monthly] == ["completed"]
    if newest is not None and newest.version != "1.0":
        assert newest.version == "2.0" and newest.kind == "monthly"
    # Either way, the artifact 2.0 exists and is complete; a refused gate leaves 1.0 in production.
    versions = {ref.version for ref in __import__("pipelines.artifacts", fromlist=["list_artifacts"]).list_artifacts(
        store, "legal")}
    assert versions == {"1.0", "2.0"}


def test_dry_run_param_plans_without_reserving(s3_bucket, tiny_training):
    from pipelines.finetune import build_domain_base
    from pipelines.privacy import read_ledger

    config, store = published_week(("legal",))
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")
    run = run_dag("domain_finetune", {"domain": "legal", "epsilon": None, "dry_run": True},
                  dt.datetime(2026, 10, 11, 2, tzinfo=UTC))
    assert str(run.state) == "success", task_states(run)
    assert task_states(run)["train_domain.train_model"] == ["skipped"]
    assert task_states(run)["train_domain.approve_promotion"] == ["skipped"]  # nothing to approve, never waits
    assert read_ledger(config=config.for_domain("legal").require_privacy(), store=store, domain="legal") == []
    assert not list(store.list("models/legal/"))


def test_a_refused_domain_blocks_only_itself(s3_bucket, tiny_training):
    """legal has no base model (refused at planning); customer_service still trains and is promoted."""
    from pipelines.artifacts import current_production
    from pipelines.finetune import build_domain_base

    config, store = published_week(("legal", "customer_service"))
    build_domain_base(config=config, store=store, domain="customer_service", who="test", size="tiny")
    run = run_dag("domain_finetune", {"domain": "", "epsilon": None, "dry_run": False},
                  dt.datetime(2026, 10, 11, 3, tzinfo=UTC))
    states = task_states(run)
    assert str(run.state) == "failed"
    assert sorted(states["train_domain.plan_finetune"]) == ["failed", "success"]
    assert states["train_domain.promote_model"] == ["success", "upstream_failed"]
    assert current_production(store, "customer_service") is not None and current_production(store, "legal") is None

