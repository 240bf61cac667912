"""The record (content hash) is the unit of account: the double-training scenario of issue 13 at the ledger level."""

from __future__ import annotations

import functools
import json
import warnings

import pytest

from pipelines.privacy import (
    BudgetExceeded,
    DeltaTooLarge,
    LedgerError,
    PrivacyConfig,
    RecordSet,
    compose_epsilon,
    plan_run,
    read_ledger,
    record_report,
    reserve_budget,
    untrained_records,
)
from privacy_helpers import Q, STEPS, WEEKS, digest

LEDGER = "privacy/ledger/medical/"
W1, W2, W3 = WEEKS
# Week 2 and 3 arrive first; week 1 is backfilled later and dedup gives it "x" (its earliest arrival),
# so week 3 is re-published without "x".
WEEK2, WEEK3_BEFORE, WEEK3_AFTER, WEEK1 = ["a", "b", "c"], ["x", "d", "e"], ["d", "e"], ["f", "x"]


def _records(names) -> RecordSet:
    return RecordSet.of(digest(n) for n in names)


def _reserve(config, store, run_id, kind, partitions, names, *, steps=STEPS):
    plan = plan_run(config=config, store=store, domain="medical", kind=kind, partitions=partitions, sample_rate=Q,
                    steps=steps, records=_records(names))
    return plan, reserve_budget(config=config, store=store, plan=plan, run_id=run_id)


@functools.lru_cache(maxsize=None)
def _independent_epsilon(mechanisms, delta):
    """Opacus' PRV accountant over the runs that read a record, at a fine absolute error (1e-3)."""
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = list(mechanisms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return acc.get_epsilon(delta=delta, eps_error=1e-3)


def _epsilon_by_record(config, store) -> dict[str, float]:
    """Each record's ε from the report, placed on records by reading who read them by hand."""
    out = {}
    for spend in record_report(config=config, store=store, domain="medical"):
        members = [n for n in "abcdefx" if _in_group(store, config, n, spend.group.runs)]
        assert len(members) == spend.group.count and not set(members) & set(out)
        out.update({n: spend.epsilon for n in members})
    return out


def _in_group(store, config, name, runs) -> bool:
    """True if exactly ``runs`` read record ``name`` (read from the ledger's record sets by hand)."""
    readers = set()
    for rec in read_ledger(config=config, store=store, domain="medical"):
        if rec.counted and digest(name) in RecordSet.decode(store.get(LEDGER + rec.records_ref["object"])):
            readers.add(rec.entry.run_id)
    return readers == set(runs) and bool(readers)


def test_a_record_moved_by_a_backfill_is_not_trained_again_and_every_record_is_charged_its_runs(config, store):
    _p2, w2 = _reserve(config, store, "weekly-w2", "weekly", [W2], WEEK2)
    _p3, w3 = _reserve(config, store, "weekly-w3", "weekly", [W3], WEEK3_BEFORE)
    # Backfill: week 1 now holds f and x; week 3 was re-published as d, e. Partition by partition, only
    # week 1 is new, and it holds x, which weekly-w3 already read.
    curated = {W1: WEEK1, W2: WEEK2, W3: WEEK3_AFTER}
    candidates = _records([n for names in curated.values() for n in names])
    fresh = untrained_records(config=config, store=store, domain="medical", candidates=candidates)
    assert fresh == _records(["f"])
    # Training x again in a weekly run is refused: its weekly share is spent (by weekly-w3).
    with pytest.raises(BudgetExceeded) as refused:
        _reserve(config, store, "weekly-w1-with-x", "weekly", [W1], WEEK1)
    message = str(refused.value)
    assert "does not fit for 1 of its 2 records" in message
    assert f"worst: 1 record(s) (e.g. sha256 {digest('x')[:16]}…) already read by 1 run(s) [weekly-w3]" in message
    assert "weekly share exceeded" in message and "(share 0.5)" in message
    # The next weekly run trains only f.
    p1, w1 = _reserve(config, store, "weekly-w1", "weekly", [W1], ["f"])
    # A monthly retrain reads everything now curated: x is charged weekly-w3 + the retrain.
    pm, _m = _reserve(config, store, "monthly", "monthly", list(curated), [n for v in curated.values() for n in v])
    by_record = _epsilon_by_record(config, store)
    mech = {"weekly-w2": (w2.noise_multiplier, Q, STEPS), "weekly-w3": (w3.noise_multiplier, Q, STEPS),
            "weekly-w1": (w1.noise_multiplier, Q, STEPS), "monthly": (pm.noise_multiplier, Q, STEPS)}
    readers = {"a": ["weekly-w2", "monthly"], "b": ["weekly-w2", "monthly"], "c": ["weekly-w2", "monthly"],
               "x": ["weekly-w3", "monthly"], "d": ["weekly-w3", "monthly"], "e": ["weekly-w3", "monthly"],
               "f": ["weekly-w1", "monthly"]}
    assert sorted(by_record) == sorted(readers)
    for name, runs in readers.items():
        history = [mech[r] for r in runs]
        assert by_record[name] == compose_epsilon(history, delta=config.delta, accountant="prv"), name
        independent = _independent_epsilon(tuple(history), config.delta)
        assert independent <= by_record[name] <= independent * 1.011, name
    # x composes two runs: more than one run's ε (what a per-partition ledger reported for it).
    assert by_record["x"] > max(w3.epsilon, pm.epsilon)


def test_moving_records_between_partitions_never_lowers_a_records_epsilon(config, store):
    _reserve(config, store, "weekly-w3", "weekly", [W3], WEEK3_BEFORE)
    before = {s.group.example: s.epsilon for s in record_report(config=config, store=store, domain="medical")}
    # The same run, had x been published under week 1: partitions play no part in the charge.
    _reserve(config, store, "weekly-w1", "weekly", [W1], ["f"])
    after = {s.group.example: s.epsilon for s in record_report(config=config, store=store, domain="medical")}
    assert all(after[k] >= v for k, v in before.items())
    [x_group] = [s for s in record_report(config=config, store=store, domain="medical")
                 if s.group.runs == ("weekly-w3",)]
    assert x_group.group.count == 3


def test_record_set_is_written_create_only_before_the_entry_and_named_by_it(config, store):
    plan, entry = _reserve(config, store, "w0", "weekly", [W2], WEEK2)
    stored = json.loads(store.get(f"{LEDGER}w0.json"))
    assert stored["records"] == {"object": "w0.records", "count": 3, "sha256": plan.record_set.sha256}
    assert RecordSet.decode(store.get(f"{LEDGER}w0.records")) == _records(WEEK2)
    # A retry with the same plan is a no-op; the same id with other records is refused.
    assert reserve_budget(config=config, store=store, plan=plan, run_id="w0") == entry
    other = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[W3], sample_rate=Q,
                     steps=STEPS, records=_records(WEEK3_BEFORE))
    with pytest.raises(LedgerError, match="already holds another record set"):
        reserve_budget(config=config, store=store, plan=other, run_id="w0")


def test_a_tampered_record_set_is_an_error_not_a_smaller_charge(config, store):
    _reserve(config, store, "w0", "weekly", [W2], WEEK2)
    store.delete(f"{LEDGER}w0.records")
    store.put(f"{LEDGER}w0.records", _records(["a"]).encode())
    with pytest.raises(LedgerError, match="does not match the sha256"):
        record_report(config=config, store=store, domain="medical")


def test_per_record_planning_on_a_legacy_ledger_asks_for_the_migration(config, store):
    legacy = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[W2], sample_rate=Q,
                      steps=STEPS)
    reserve_budget(config=config, store=store, plan=legacy, run_id="old")
    with pytest.raises(LedgerError, match=r"legacy format\): upgrade the ledger first with `python -m pipelines "
                                          r"privacy migrate --domain medical`"):
        plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[W3], sample_rate=Q,
                 steps=STEPS, records=_records(WEEK3_BEFORE))


def test_delta_above_one_tenth_of_one_over_n_is_refused_with_what_to_change(store):
    loose = PrivacyConfig(epsilon=1.0, delta=1e-3, weekly_share=0.5, weekly_epsilon=0.5, monthly_epsilon=0.5)
    names = [f"r{i}" for i in range(200)]  # 1/(10*200) = 5e-4 < 1e-3
    with pytest.raises(DeltaTooLarge) as refused:
        plan_run(config=loose, store=store, domain="medical", kind="weekly", partitions=[W1], sample_rate=Q,
                 steps=STEPS, records=_records(names))
    assert str(refused.value) == (
        "δ=0.001 is too large for a run over 200 records of medical: δ must be at most 1/(10·n) = 0.0005. Set "
        "domains.medical.privacy.delta to 5e-04 or lower (a smaller δ costs little ε), or read fewer records in "
        "this run")
    assert isinstance(refused.value, BudgetExceeded)
    ok = plan_run(config=loose, store=store, domain="medical", kind="weekly", partitions=[W1], sample_rate=Q,
                  steps=STEPS, records=_records(names[:100]))  # exactly 1/(10*100)
    assert len(ok.record_set) == 100
    assert list(store.list(LEDGER)) == []


def test_record_spend_history_is_the_worst_records_epsilon_after_each_run(config, store):
    from pipelines.privacy import record_spend_history

    _p2, w2 = _reserve(config, store, "weekly-w2", "weekly", [W2], WEEK2)
    _p3, w3 = _reserve(config, store, "weekly-w3", "weekly", [W3], WEEK3_BEFORE)
    pm, _m = _reserve(config, store, "monthly", "monthly", [W3], ["x"])
    history = record_spend_history(config=config, store=store, domain="medical")
    assert [run for _when, run, _eps in history] == ["weekly-w2", "weekly-w3", "monthly"]
    assert [eps for *_, eps in history] == [
        w2.epsilon, max(w2.epsilon, w3.epsilon),
        compose_epsilon([(w3.noise_multiplier, Q, STEPS), (pm.noise_multiplier, Q, STEPS)], delta=config.delta,
                        accountant="prv")]


def test_training_reads_back_exactly_the_planned_records(config, store):
    from pipelines.privacy import planned_records, release_budget

    _reserve(config, store, "w0", "weekly", [W2], WEEK2)
    assert planned_records(config=config, store=store, domain="medical", run_id="w0") == _records(WEEK2)
    with pytest.raises(LedgerError, match="no ledger entry for run ghost"):
        planned_records(config=config, store=store, domain="medical", run_id="ghost")
    legacy = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[W3], sample_rate=Q,
                      steps=STEPS)
    store.put(f"{LEDGER}old.json", json.dumps(legacy.entry(run_id="old").to_json()).encode(), if_none_match=True)
    with pytest.raises(LedgerError, match="reserved per partition"):
        planned_records(config=config, store=store, domain="medical", run_id="old")
    release_budget(config=config, store=store, domain="medical", run_id="old", reason="test", by="test")
    with pytest.raises(LedgerError, match="is void: it must not train"):
        planned_records(config=config, store=store, domain="medical", run_id="old")
