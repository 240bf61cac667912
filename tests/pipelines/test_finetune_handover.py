"""The hand-overs between training steps: frozen, JSON-safe for XCom, and the same dicts the steps always exchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.config import ConfigError
from pipelines.finetune import PinnedPartition, RunRequest, StartModel, TrainedRun, TrainPlan

PLAN = {
    "domain": "legal", "kind": "weekly", "task": "classification", "run_id": "weekly-legal-1", "dry_run": False,
    "requested_by": "test",
    "partitions": [{"interval": "2026-10-04_2026-10-11", "version": 2, "rows": 40, "digest": "ab" * 32}],
    "train_examples": 36, "eval_examples": 4,
    "start": {"artifact_id": "a1", "version": "1.0", "root": "models/legal/artifacts/a1", "from": "production"},
    "sample_rate": 0.25, "steps": 8, "noise_multiplier": 1.1, "epsilon": 0.5, "delta": 1e-5, "accountant": "prv",
    "max_grad_norm": 1.0, "ledger_key": "privacy/ledger/legal/weekly-legal-1.json",
}
TRAINED = {"domain": "legal", "kind": "weekly", "run_id": "weekly-legal-1", "task": "classification",
           "artifact_id": "b2", "version": "1.1", "root": "models/legal/artifacts/b2", "metrics": {"accuracy": 0.9},
           "baseline": {"accuracy": 0.8, "artifact_id": "a1"}, "epsilon": 0.5, "steps": 8}


def test_plan_round_trips_through_json_unchanged():
    plan = TrainPlan.from_dict(json.loads(json.dumps(PLAN)))
    assert plan.start == StartModel(artifact_id="a1", version="1.0", root="models/legal/artifacts/a1",
                                    source="production")
    assert plan.partitions == (PinnedPartition(interval="2026-10-04_2026-10-11", version=2, rows=40,
                                               digest="ab" * 32),)
    assert plan.to_dict() == PLAN
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = 9  # type: ignore[misc]


def test_a_dry_run_plan_has_no_ledger_key():
    values = {k: v for k, v in PLAN.items() if k != "ledger_key"} | {"dry_run": True}
    assert TrainPlan.from_dict(values).to_dict() == values


def test_trained_run_keeps_the_marker_format_and_adds_the_verdict():
    trained = TrainedRun.from_dict(TRAINED)
    assert trained.to_dict() == TRAINED  # the run marker in the store and the XCom value
    refused = trained.judged(promoted=False, gate={"passed": False, "metric": "accuracy"})
    assert refused.to_dict() == {**TRAINED, "promoted": False, "gate": {"passed": False, "metric": "accuracy"}}
    promoted = trained.judged(promoted=True, gate={"passed": True}, promotion=3)
    assert TrainedRun.from_dict(json.loads(json.dumps(promoted.to_dict()))) == promoted
    assert promoted.to_dict()["promotion"] == 3


def test_a_skipped_run_says_why():
    skipped = TrainedRun.skipped_plan(TrainPlan.from_dict(PLAN), "dry run")
    assert skipped.to_dict() == {"domain": "legal", "kind": "weekly", "run_id": "weekly-legal-1",
                                 "task": "classification", "skipped": "dry run"}


@pytest.mark.parametrize(("values", "message"), [
    ({"kind": "daily"}, "kind='daily': use weekly or monthly"),
    ({"epsilon": 0}, "epsilon=0: must be > 0"),
])
def test_bad_requests_fail_naming_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        RunRequest(**{"domain": "legal", "kind": "weekly", "run_id": "r", **values})


def test_a_start_model_is_production_or_base():
    with pytest.raises(ConfigError, match="source='latest': use production or base"):
        StartModel(artifact_id="a", version="1.0", root="r", source="latest")
