"""Accounting: recomputed ε agrees with what plan_run recorded; composition is sequential per partition, parallel across."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.privacy import compose_epsilon, plan_run, reserve_budget
from pipelines.privacy.accounting import Charge, partition_spend
from privacy_helpers import Q, STEPS, WEEKS

TOL = 1e-6


def test_recomputed_epsilon_prv_le_reported_le_rdp(config, store):
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS)
    reserve_budget(config=config, store=store, plan=plan, run_id="w1")
    entry = json.loads(store.get("privacy/ledger/medical/w1.json"))
    reported = entry["epsilon"]
    mechanism = [(entry["noise_multiplier"], entry["sample_rate"], entry["steps"])]  # recomputed from the entry alone
    prv, rdp = (compose_epsilon(mechanism, delta=entry["delta"], accountant=a) for a in ("prv", "rdp"))
    assert prv <= reported + TOL
    assert reported <= rdp + TOL
    assert prv < rdp  # RDP is the looser bound: if they were equal, one of them was not really computed
    # Calibrated close to the target: at most 0.5% of it left on the table, never over it.
    assert config.weekly_epsilon * 0.995 <= reported <= config.weekly_epsilon


def test_epsilon_falls_with_a_looser_delta_and_grows_with_steps():
    mechanism = (1.0, 0.1, 10)
    assert compose_epsilon([mechanism], delta=1e-3, accountant="prv") < compose_epsilon([mechanism], delta=1e-5,
                                                                                        accountant="prv")
    assert compose_epsilon([(1.0, 0.1, 20)], delta=1e-5, accountant="rdp") > compose_epsilon([mechanism], delta=1e-5,
                                                                                            accountant="rdp")


def test_sequential_composition_is_more_than_one_run_and_at_most_the_sum():
    one = compose_epsilon([(2.0, 0.1, 20)], delta=1e-5, accountant="prv")
    two = compose_epsilon([(2.0, 0.1, 20), (2.0, 0.1, 20)], delta=1e-5, accountant="prv")
    assert one < two <= 2 * one
    # Equal mechanisms merge: two runs of 20 steps are one run of 40.
    assert two == compose_epsilon([(2.0, 0.1, 40)], delta=1e-5, accountant="prv")
    assert compose_epsilon([], delta=1e-5, accountant="prv") == 0.0


def test_disjoint_partitions_compose_in_parallel(config, store):
    plans = {}
    for i, week in enumerate(WEEKS[:2]):
        plans[week] = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[week],
                               sample_rate=Q, steps=STEPS)
        reserve_budget(config=config, store=store, plan=plans[week], run_id=f"w{i}")
    from pipelines.privacy import budget_report

    report = {s.partition: s for s in budget_report(config=config, store=store, domain="medical")}
    assert sorted(report) == list(WEEKS[:2])
    for i, week in enumerate(WEEKS[:2]):
        assert report[week].runs == (f"w{i}",)
        assert report[week].epsilon == plans[week].epsilon  # one run's ε, not two composed
        assert report[week].monthly_epsilon == 0.0


def test_partition_spend_counts_only_runs_that_read_it(config):
    charges = [Charge("a", "weekly", (WEEKS[0],), (2.0, 0.1, 20)), Charge("b", "monthly", WEEKS, (3.0, 0.1, 20)),
               Charge("c", "weekly", (WEEKS[1],), (1.0, 0.1, 20))]
    spend = partition_spend(config=config, partition=WEEKS[0], charges=charges)
    assert spend.runs == ("a", "b")
    assert spend.weekly_epsilon == compose_epsilon([(2.0, 0.1, 20)], delta=1e-5, accountant="prv")
    assert spend.monthly_epsilon == compose_epsilon([(3.0, 0.1, 20)], delta=1e-5, accountant="prv")
    assert spend.epsilon == compose_epsilon([(2.0, 0.1, 20), (3.0, 0.1, 20)], delta=1e-5, accountant="prv")


@pytest.mark.parametrize(("history", "message"), [
    ([(0.0, 0.1, 10)], "noise_multiplier"), ([(1.0, 1.5, 10)], "sample_rate"), ([(1.0, 0.1, 0)], "steps"),
])
def test_invalid_mechanisms_are_refused(history, message):
    with pytest.raises(ValueError, match=message):
        compose_epsilon(history, delta=1e-5, accountant="rdp")


def test_prv_error_is_relative_to_epsilon_not_opacus_absolute_0_01():
    import warnings

    from opacus.accountants import PRVAccountant

    mechanism = (22.0, 0.05, 200)  # a medical-sized run: ε ≈ 0.1
    acc = PRVAccountant()
    acc.history = [mechanism]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opacus_default = acc.get_epsilon(delta=1e-5)  # eps_error=0.01: ~10% of ε over the truth
        fine = acc.get_epsilon(delta=1e-5, eps_error=1e-4)
    ours = compose_epsilon([mechanism], delta=1e-5, accountant="prv")
    assert fine <= ours <= fine * 1.011
    assert opacus_default - ours > 0.008


def test_no_noise_reports_infinite_epsilon_by_design_and_the_ledger_refuses_it():
    from pipelines.privacy import run_epsilon

    assert run_epsilon(noise_multiplier=0.0, sample_rate=0.1, steps=5, delta=1e-5, accountant="prv") == math.inf
    assert run_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5, accountant="prv") == 0.0
    assert run_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=5, delta=1e-5, accountant="prv") == \
        compose_epsilon([(1.0, 0.1, 5)], delta=1e-5, accountant="prv")
    with pytest.raises(ValueError, match=r"noise_multiplier=0: use a finite number > 0"):
        compose_epsilon([(0, 0.1, 5)], delta=1e-5, accountant="prv")
