"""Record sets, exact grouping by run signature, subjects (contribution bounding, group privacy) and purge lineage."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.privacy import (
    RecordRun,
    RecordSet,
    SubjectMap,
    artifacts_trained_on,
    bound_contributions,
    compose_epsilon,
    hash_subject,
    plan_run,
    reserve_budget,
    subject_report,
)
from pipelines.privacy.record_accounting import group_records
from privacy_helpers import Q, STEPS, WEEKS, digest

LEDGER = "privacy/ledger/medical/"


def _rs(names) -> RecordSet:
    return RecordSet.of(digest(n) for n in names)


def test_record_set_round_trips_and_answers_membership():
    records = RecordSet.of([digest("b"), digest("a"), digest("a"), "sha256:" + digest("c")])
    assert len(records) == 3 and records.hexes() == sorted(digest(n) for n in "abc")
    assert RecordSet.decode(records.encode()) == records
    assert digest("a") in records and digest("z") not in records
    assert records.difference(_rs("a")) == _rs("bc") and records.union(_rs("z")) == _rs("abcz")
    with pytest.raises(ValueError, match="not a record set"):
        RecordSet.decode(records.encode()[:-1])
    with pytest.raises(ValueError, match="use a SHA-256 digest"):
        RecordSet.of(["abc"])


def test_records_are_grouped_exactly_by_the_runs_that_read_them():
    mech = (2.0, 0.1, 10)
    runs = [RecordRun("r1", "weekly", mech, _rs("abc")), RecordRun("r2", "weekly", mech, _rs("cd")),
            RecordRun("r3", "monthly", mech, _rs("abcdx"))]
    groups = {g.runs: g.count for g in group_records(_rs("abcdeyx"), runs)}
    assert groups == {("r1", "r3"): 2, ("r1", "r2", "r3"): 1, ("r2", "r3"): 1, ("r3",): 1, (): 2}


def test_contribution_bounding_keeps_k_records_per_subject_deterministically():
    alice, bob = hash_subject("patient-1", domain="medical"), hash_subject("patient-2", domain="medical")
    assert alice != hash_subject("patient-1", domain="legal")  # hashed per domain, never stored raw
    rows = [(digest(f"a{i}"), alice) for i in range(5)] + [(digest("b0"), bob), (digest("free"), None)]
    kept, subjects = bound_contributions(rows, max_per_subject=2, run_key="run-1")
    assert len(kept) == 4 and digest("free") in kept and digest("b0") in kept
    assert {s: len(r) for s, r in subjects.subjects().items()} == {alice: 2, bob: 1}
    assert bound_contributions(list(reversed(rows)), max_per_subject=2, run_key="run-1") == (kept, subjects)
    chosen = {tuple(bound_contributions(rows, max_per_subject=2, run_key=f"run-{i}")[0].hexes()) for i in range(8)}
    assert len(chosen) > 1  # another run may keep other records of the same subject
    with pytest.raises(ValueError, match="max_per_subject=0"):
        bound_contributions(rows, max_per_subject=0)


def test_subject_epsilon_is_group_privacy_over_its_records(config, store):
    alice = hash_subject("patient-1", domain="medical")
    records, subjects = bound_contributions([(digest("a1"), alice), (digest("a2"), alice), (digest("z"), None)],
                                            max_per_subject=2, run_key="w0")
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS, records=records, subjects=subjects)
    entry = reserve_budget(config=config, store=store, plan=plan, run_id="w0")
    assert json.loads(store.get(f"{LEDGER}w0.json"))["subjects"]["count"] == 2
    assert SubjectMap.decode(store.get(f"{LEDGER}w0.subjects")) == subjects
    [spend] = subject_report(config=config, store=store, domain="medical")
    one = compose_epsilon([(entry.noise_multiplier, Q, STEPS)], delta=config.delta, accountant="prv")
    assert (spend.subject, spend.records, spend.max_records_per_run) == (alice.hex(), 2, 2)
    assert spend.epsilon == 2 * one
    assert spend.delta == pytest.approx(config.delta * (1 + math.exp(one)))
    assert plan.subject_epsilon == json.loads(store.get(f"{LEDGER}w0.json"))["subject_epsilon"] == 2 * one


def _manifest(store, artifact_id, *, version, parent, run_id, when):
    body = {"artifact_id": artifact_id, "domain": "medical", "version": version, "kind": "weekly",
            "task": "classification", "parent": parent, "created_at": when, "data": {"partitions": []},
            "dp": {"ledger_key": f"{LEDGER}{run_id}.json"} if run_id else None}
    store.put(f"models/medical/artifacts/{artifact_id}/manifest.json", json.dumps(body).encode())


def test_purge_lists_the_promoted_artifacts_whose_lineage_read_the_record(config, store):
    for run_id, week, names in (("w0", WEEKS[0], "ab"), ("w1", WEEKS[1], "cd")):
        plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[week],
                        sample_rate=Q, steps=STEPS, records=_rs(names))
        reserve_budget(config=config, store=store, plan=plan, run_id=run_id)
    base, first, second, unpromoted = "0" * 16, "1" * 16, "2" * 16, "3" * 16
    _manifest(store, first, version="1.0", parent=base, run_id="w0", when="2026-10-11T00:00:00Z")
    _manifest(store, second, version="1.1", parent=first, run_id="w1", when="2026-10-18T00:00:00Z")
    _manifest(store, unpromoted, version="1.2", parent=first, run_id=None, when="2026-10-19T00:00:00Z")
    for n, artifact in enumerate((first, second), start=1):
        store.put(f"models/medical/promotions/{n:08d}.json", json.dumps(
            {"number": n, "domain": "medical", "action": "promote", "artifact_id": artifact, "version": "x",
             "previous_artifact_id": None}).encode())
    hits = artifacts_trained_on(config=config, store=store, domain="medical", artifacts_prefix="models",
                                records=[digest("a")])
    # The second model was fine-tuned from the first, so it carries record a too.
    assert [(h.artifact_id, h.runs, h.promoted, h.in_production) for h in hits] == \
        [(first, ("w0",), True, False), (second, ("w0",), True, True)]
    assert [h.artifact_id for h in artifacts_trained_on(config=config, store=store, domain="medical",
                                                        artifacts_prefix="models", records=[digest("a")],
                                                        promoted_only=False)] == [first, second, unpromoted]
    assert [h.artifact_id for h in artifacts_trained_on(config=config, store=store, domain="medical",
                                                        artifacts_prefix="models", records=[digest("c")])] == [second]
    assert artifacts_trained_on(config=config, store=store, domain="medical", artifacts_prefix="models",
                                records=[digest("nobody")]) == []


def test_purge_by_subject_finds_the_runs_that_read_its_records(config, store):
    alice = hash_subject("patient-1", domain="medical")
    records, subjects = bound_contributions([(digest("a1"), alice), (digest("z"), None)], max_per_subject=1)
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS, records=records, subjects=subjects)
    reserve_budget(config=config, store=store, plan=plan, run_id="w0")
    _manifest(store, "1" * 16, version="1.0", parent=None, run_id="w0", when="2026-10-11T00:00:00Z")
    store.put("models/medical/promotions/00000001.json", json.dumps(
        {"number": 1, "domain": "medical", "action": "promote", "artifact_id": "1" * 16, "version": "1.0",
         "previous_artifact_id": None}).encode())
    [hit] = artifacts_trained_on(config=config, store=store, domain="medical", artifacts_prefix="models",
                                 subject_ids=["patient-1"])
    assert (hit.artifact_id, hit.runs) == ("1" * 16, ("w0",))
    assert artifacts_trained_on(config=config, store=store, domain="medical", artifacts_prefix="models",
                                subject_ids=["patient-2"]) == []
