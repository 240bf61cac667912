"""The ledger: reserve before training, never exceed a partition's budget, refuse races, retry safely."""

from __future__ import annotations

import json
import random
import threading

import pytest

from pipelines.privacy import (
    BudgetExceeded,
    LedgerError,
    budget_report,
    complete_run,
    plan_run,
    read_ledger,
    release_budget,
    reserve_budget,
    spend_history,
)
from pipelines.privacy.accounting import TOLERANCE
from pipelines.storage import LocalObjectStore
from privacy_helpers import Q, STEPS, WEEKS, PausingStore, race

LEDGER = "privacy/ledger/medical/"


def _keys(store) -> list[str]:
    return [o.key[len(LEDGER):] for o in store.list(LEDGER)]


def _run(config, store, run_id, kind, partitions, *, sample_rate=Q, steps=STEPS):
    plan = plan_run(config=config, store=store, domain="medical", kind=kind, partitions=partitions,
                    sample_rate=sample_rate, steps=steps)
    return reserve_budget(config=config, store=store, plan=plan, run_id=run_id)


def test_weekly_runs_then_monthly_retrain_never_exceed_the_budget(config, store):
    for i, week in enumerate(WEEKS):
        _run(config, store, f"weekly-{i}", "weekly", [week])
    _run(config, store, "monthly-0", "monthly", list(WEEKS))

    report = budget_report(config=config, store=store, domain="medical")
    assert [s.partition for s in report] == list(WEEKS)
    for i, spend in enumerate(report):
        assert spend.runs == ("monthly-0", f"weekly-{i}")
        assert spend.weekly_epsilon <= config.weekly_budget + TOLERANCE
        assert spend.monthly_epsilon <= config.monthly_budget + TOLERANCE
        assert max(spend.weekly_epsilon, spend.monthly_epsilon) < spend.epsilon <= config.epsilon + TOLERANCE
        assert spend.over_budget() == []

    with pytest.raises(BudgetExceeded) as refused:
        _run(config, store, "monthly-1", "monthly", list(WEEKS))
    message = str(refused.value)
    assert "partition 2026-10-04_2026-10-11: monthly share exceeded" in message
    assert "already read by 2 run(s) [monthly-0, weekly-0]" in message
    assert "Leave the partition(s) out of this run" in message
    assert refused.value.partitions == WEEKS and refused.value.kind == "monthly"
    # A second weekly run on a partition is over its weekly share too; a new week still fits.
    with pytest.raises(BudgetExceeded, match="weekly share exceeded"):
        _run(config, store, "weekly-again", "weekly", [WEEKS[0]])
    _run(config, store, "weekly-3", "weekly", ["2026-10-25_2026-11-01"])
    history = spend_history(config=config, store=store, domain="medical")
    assert [run for _when, run, _eps in history] == ["weekly-0", "weekly-1", "weekly-2", "monthly-0", "weekly-3"]
    assert [eps for *_, eps in history] == [report[0].weekly_epsilon] * 3 + [report[0].epsilon] * 2
    assert sorted(r.entry.run_id for r in read_ledger(config=config, store=store, domain="medical")) == \
        ["monthly-0", "weekly-0", "weekly-1", "weekly-2", "weekly-3"]


def test_over_budget_run_is_refused_before_anything_is_written(config, store):
    _run(config, store, "w0", "weekly", [WEEKS[0]])
    before = _keys(store)
    trained = []
    with pytest.raises(BudgetExceeded, match=r"partition 2026-10-04_2026-10-11: weekly share exceeded"):
        _run(config, store, "w1", "weekly", [WEEKS[0], WEEKS[1]])
        trained.append("w1")  # the training that must never start
    assert trained == []
    assert _keys(store) == before == ["w0.decision.json", "w0.json"]


def test_reserved_entry_is_written_with_its_plan_and_counts_before_completion(config, store):
    entry = _run(config, store, "scheduled__2026-10-11T00:00:00+00:00", "weekly", ["2026-10-04/2026-10-11"])
    stored = json.loads(store.get(f"{LEDGER}scheduled__2026-10-11T00:00:00+00:00.json"))
    assert stored == entry.to_json()
    assert {k: stored[k] for k in ("domain", "kind", "partitions", "delta", "sample_rate", "steps", "accountant",
                                   "max_grad_norm", "status")} == \
        {"domain": "medical", "kind": "weekly", "partitions": [WEEKS[0]], "delta": 1e-5, "sample_rate": Q,
         "steps": STEPS, "accountant": "prv", "max_grad_norm": 1.0, "status": "reserved"}
    [record] = read_ledger(config=config, store=store, domain="medical")
    assert record.status == "granted"
    assert budget_report(config=config, store=store, domain="medical")[0].runs == (entry.run_id,)


def test_crash_after_writing_the_entry_still_counts_and_retry_rechecks(config, store):
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS)
    entry = plan.entry(run_id="crashed")
    store.put(f"{LEDGER}crashed.json", json.dumps(entry.to_json()).encode(), if_none_match=True)
    [record] = read_ledger(config=config, store=store, domain="medical")
    assert record.status == "reserved"
    with pytest.raises(BudgetExceeded):  # the undecided reservation holds the budget
        _run(config, store, "other", "weekly", [WEEKS[0]])
    assert _keys(store) == ["crashed.json"]
    # The retry of the crashed run finds its entry, re-checks and is granted.
    assert reserve_budget(config=config, store=store, plan=plan, run_id="crashed") == entry
    # A run that skipped plan_run is caught by the re-check after its write, and voids itself.
    with pytest.raises(BudgetExceeded, match="it has been voided"):
        reserve_budget(config=config, store=store, plan=plan, run_id="other")
    statuses = {r.entry.run_id: r.status for r in read_ledger(config=config, store=store, domain="medical")}
    assert statuses == {"crashed": "granted", "other": "void"}
    # Retrying again is a no-op; reusing the id for another plan is refused.
    assert reserve_budget(config=config, store=store, plan=plan, run_id="crashed") == entry
    other = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[1]],
                     sample_rate=Q, steps=STEPS)
    with pytest.raises(LedgerError, match="already reserved a different run"):
        reserve_budget(config=config, store=store, plan=other, run_id="crashed")
    with pytest.raises(BudgetExceeded, match="was refused earlier"):
        reserve_budget(config=config, store=store, plan=plan, run_id="other")


def test_complete_run_records_actual_steps_and_keeps_the_planned_spend(config, store):
    _run(config, store, "w0", "weekly", [WEEKS[0]])
    spent = budget_report(config=config, store=store, domain="medical")[0].epsilon
    record = complete_run(config=config, store=store, domain="medical", run_id="w0", steps=STEPS - 5, epsilon=0.41)
    assert (record.status, record.done["steps"], record.done["epsilon"]) == ("completed", STEPS - 5, 0.41)
    assert complete_run(config=config, store=store, domain="medical", run_id="w0", steps=STEPS - 5,
                        epsilon=0.41).done == record.done
    with pytest.raises(LedgerError, match="already completed"):
        complete_run(config=config, store=store, domain="medical", run_id="w0", steps=STEPS, epsilon=0.41)
    assert budget_report(config=config, store=store, domain="medical")[0].epsilon == spent


def test_a_run_that_took_more_steps_than_reserved_is_charged_for_them(config, store):
    _run(config, store, "w0", "weekly", [WEEKS[0]])
    spent = budget_report(config=config, store=store, domain="medical")[0]
    complete_run(config=config, store=store, domain="medical", run_id="w0", steps=STEPS * 2, epsilon=0.7)
    after = budget_report(config=config, store=store, domain="medical")[0]
    assert after.epsilon > spent.epsilon and after.over_budget() == ["weekly share"]


def test_complete_and_release_refuse_what_they_cannot_account_for(config, store):
    with pytest.raises(LedgerError, match="must reserve_budget before training"):
        complete_run(config=config, store=store, domain="medical", run_id="ghost", steps=1, epsilon=0.1)
    _run(config, store, "w0", "weekly", [WEEKS[0]])
    assert release_budget(config=config, store=store, domain="medical", run_id="w0", reason="test", by="me") is False
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[1]],
                    sample_rate=Q, steps=STEPS)
    store.put(f"{LEDGER}stuck.json", json.dumps(plan.entry(run_id="stuck").to_json()).encode(), if_none_match=True)
    assert release_budget(config=config, store=store, domain="medical", run_id="stuck", reason="crashed", by="me")
    with pytest.raises(LedgerError, match="was not granted"):
        complete_run(config=config, store=store, domain="medical", run_id="stuck", steps=1, epsilon=0.1)
    # The released reservation no longer holds week 1's budget.
    assert [s.partition for s in budget_report(config=config, store=store, domain="medical")] == [WEEKS[0]]
    with pytest.raises(BudgetExceeded, match="voided before it was granted|refused earlier"):
        reserve_budget(config=config, store=store, plan=plan, run_id="stuck")


def test_unreadable_entry_is_an_error_not_a_free_budget(config, store):
    store.put(f"{LEDGER}bad.json", b"{not json", if_none_match=True)
    with pytest.raises(LedgerError, match="is not JSON"):
        budget_report(config=config, store=store, domain="medical")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "daily"}, "kind='daily'"), ({"partitions": []}, "partitions is empty"),
    ({"partitions": "2026-10-04_2026-10-11"}, "not one string"), ({"sample_rate": 0}, "sample_rate"),
    ({"steps": 0}, "steps"), ({"partitions": ["last-week"]}, "interval 'last-week'"),
])
def test_invalid_plans_are_refused(config, store, kwargs, message):
    args = {"kind": "weekly", "partitions": [WEEKS[0]], "sample_rate": Q, "steps": STEPS, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_run(config=config, store=store, domain="medical", **args)


def test_bad_run_id_is_refused(config, store):
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS)
    for bad in ("a/b", "x.done", "", "../up"):
        with pytest.raises(ValueError, match="run_id"):
            reserve_budget(config=config, store=store, plan=plan, run_id=bad)
    assert _keys(store) == []




def _plan(config, store, week):
    return plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[week],
                    sample_rate=Q, steps=STEPS)


def test_two_reservations_that_both_checked_before_deciding_both_refuse(config, tmp_path):
    store = PausingStore(LocalObjectStore(tmp_path / "b"), barrier=threading.Barrier(2), at="both")
    plan = _plan(config, store, WEEKS[0])
    assert _plan(config, store, WEEKS[0]) == plan  # each alone fits: the last budget
    outcomes = race(config, store, [plan, plan], ["a", "b"])
    assert outcomes == {"a": "refused", "b": "refused"}
    assert {r.entry.run_id: r.status for r in read_ledger(config=config, store=store, domain="medical")} == \
        {"a": "void", "b": "void"}


def test_two_reservations_that_both_wrote_before_checking_grant_at_most_one(config, tmp_path):
    for round_ in range(4):
        store = PausingStore(LocalObjectStore(tmp_path / f"b{round_}"), barrier=threading.Barrier(2))
        plan = _plan(config, store, WEEKS[0])
        outcomes = race(config, store, [plan, plan], ["a", "b"])
        # Whoever checks second may see the first one's void and take the budget; never both.
        assert sorted(outcomes.values()) in (["refused", "refused"], ["granted", "refused"])
        [spend] = budget_report(config=config, store=store, domain="medical", partitions=[WEEKS[0]])
        assert spend.runs == tuple(r for r, o in outcomes.items() if o == "granted")


def test_concurrent_reservations_for_the_last_budget_at_most_one_succeeds(config, tmp_path):
    rng = random.Random(7)
    granted_counts = []
    for round_ in range(8):
        store = PausingStore(LocalObjectStore(tmp_path / f"b{round_}"), jitter=rng)
        plan = _plan(config, store, WEEKS[0])
        outcomes = race(config, store, [plan, plan], [f"a{round_}", f"b{round_}"])
        granted = [r for r, o in outcomes.items() if o == "granted"]
        granted_counts.append(len(granted))
        assert len(outcomes) == 2 and len(granted) <= 1
        [spend] = budget_report(config=config, store=store, domain="medical", partitions=[WEEKS[0]])
        assert spend.over_budget() == [] and spend.runs == tuple(granted)
    assert max(granted_counts) == 1  # the race is not always a tie: someone can win


def test_concurrent_runs_on_disjoint_partitions_both_succeed(config, tmp_path):
    store = PausingStore(LocalObjectStore(tmp_path / "b"), barrier=threading.Barrier(2))
    plans = [_plan(config, store, WEEKS[0]), _plan(config, store, WEEKS[1])]
    assert race(config, store, plans, ["a", "b"]) == {"a": "granted", "b": "granted"}


def test_replanning_a_granted_reservation_under_its_own_run_id_is_not_double_counted(config, store):
    _run(config, store, "w0", "weekly", [WEEKS[0]])
    with pytest.raises(BudgetExceeded):
        plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                 sample_rate=Q, steps=STEPS)
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS, run_id="w0")
    assert reserve_budget(config=config, store=store, plan=plan, run_id="w0").run_id == "w0"
    assert _keys(store) == ["w0.decision.json", "w0.json"]
