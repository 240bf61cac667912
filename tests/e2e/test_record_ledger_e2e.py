"""Issue 13 item 1 end to end on SeaweedFS: a record that a backfill moves between weeks is trained (and charged) once.

The demo's medical data: weeks 2 and 3 published, a weekly run, week 1 back-filled (it takes a record over from
week 3 by dedup displacement, and week 3 is re-published without it), a second weekly run. Per-partition
bookkeeping trained the moved record twice and charged it once; per-record bookkeeping must train it once, and
every record's ε in the ledger must equal the composition of the runs that actually trained on it.
"""

from __future__ import annotations

import pytest

from e2e_helpers import WEEKS, load_sample, store_and_config

DOMAIN = "medical"


def _ingest(config, store, week: str) -> list[dict]:
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef, process_partition, republish_displaced

    result = process_partition(config=config, store=store,
                               part=PartitionRef(domain=DOMAIN, interval=Interval.parse(week), run_key="e2e"))
    assert result["published"], result
    targets = result["republish"]
    return republish_displaced(config=config, store=store, targets=targets, run_key="e2e") if targets else []


def _hashes(store, config, week: str) -> set[str]:
    from pipelines.publish import partition_prefix, read_committed_rows

    _commit, rows = read_committed_rows(store, partition_prefix(config.storage.curated_prefix, DOMAIN, week))
    return {r["content_sha256"] for r in rows}


@pytest.fixture
def trained_on(monkeypatch) -> dict[str, list[str]]:
    """run id -> content hashes of the examples training actually received (the trainer's input, not the ledger)."""
    import pipelines.finetune.run as run_module

    seen: dict[str, list[str]] = {}
    fit = run_module._fit

    def spy(plan, **kwargs):
        seen[plan.run_id] = [e["content_sha256"] for e in kwargs["train_examples"]]
        return fit(plan, **kwargs)

    monkeypatch.setattr(run_module, "_fit", spy)
    return seen


def test_a_record_moved_by_a_backfill_is_trained_once_and_every_records_epsilon_is_its_runs(
        s3_bucket, tiny_training, trained_on):
    from pipelines.finetune import RunRequest, build_domain_base, domains_to_train, run_domain
    from pipelines.privacy import (
        compose_epsilon, planned_records, read_ledger, record_report, untrained_records, RecordSet,
    )
    from pipelines.train.data import is_held_out

    config, store = store_and_config()
    privacy = config.for_domain(DOMAIN).require_privacy()
    load_sample(store, only=(DOMAIN,))
    for week in (WEEKS[1], WEEKS[2]):
        assert _ingest(config, store, week) == []
    week3_before = _hashes(store, config, WEEKS[2])
    build_domain_base(config=config, store=store, domain=DOMAIN, who="test", size="tiny")

    def weekly(n: int):
        return run_domain(config=config, store=store, who="test",
                          request=RunRequest(domain=DOMAIN, kind="weekly", run_id=f"weekly-{DOMAIN}-{n}",
                                             requested_by="test"))

    assert domains_to_train(config=config, store=store, kind="weekly", only=DOMAIN) == [DOMAIN]
    first = weekly(1)
    assert first.artifact_id

    # Week 1 back-filled: it takes one record over from week 3, which is re-published without it.
    moved = _ingest(config, store, WEEKS[0])
    assert [(m["domain"], m["interval"]) for m in moved if m["published"]] == [(DOMAIN, WEEKS[2])]
    [record] = week3_before & _hashes(store, config, WEEKS[0])
    assert record not in _hashes(store, config, WEEKS[2])
    # The moved record is a training record (not held out), so a per-partition run would train on it again.
    assert not is_held_out(record, config.for_domain(DOMAIN).training.eval_percent)
    assert record in trained_on[f"weekly-{DOMAIN}-1"]

    assert domains_to_train(config=config, store=store, kind="weekly", only=DOMAIN) == [DOMAIN]
    second = weekly(2)
    assert second.artifact_id

    # Trained once: the second weekly run read week 1's other records, not the moved one.
    runs = [f"weekly-{DOMAIN}-1", f"weekly-{DOMAIN}-2"]
    assert [record in trained_on[r] for r in runs] == [True, False]
    assert trained_on[runs[1]] and not set(trained_on[runs[0]]) & set(trained_on[runs[1]])
    # Each run trained on exactly the record set its ledger entry names (no more, no less, no repeats).
    for run_id in runs:
        assert sorted(trained_on[run_id]) == planned_records(config=privacy, store=store, domain=DOMAIN,
                                                             run_id=run_id).hexes()
    # Nothing is left for a third weekly run: every curated training record was read by a weekly run.
    everything = RecordSet.of(h for w in WEEKS[:3] for h in _hashes(store, config, w))
    left = untrained_records(config=privacy, store=store, domain=DOMAIN, candidates=everything)
    assert not set(left.hexes()) & {h for r in runs for h in trained_on[r]}
    assert domains_to_train(config=config, store=store, kind="weekly", only=DOMAIN) == []

    # Every record's composed ε (the ledger's per-record report) equals the independent composition of the
    # mechanisms of the runs that actually trained on it (from the trainer's inputs above).
    ledger = {r.entry.run_id: r for r in read_ledger(config=privacy, store=store, domain=DOMAIN)}
    assert [ledger[r].status for r in runs] == ["completed", "completed"]
    mechanism = {r: (ledger[r].entry.noise_multiplier, ledger[r].entry.sample_rate, ledger[r].counted_steps)
                 for r in runs}
    readers: dict[str, list[str]] = {}
    for run_id in runs:
        for h in trained_on[run_id]:
            readers.setdefault(h, []).append(run_id)
    assert readers[record] == [runs[0]]
    groups = record_report(config=privacy, store=store, domain=DOMAIN)
    assert sum(g.group.count for g in groups) == len(readers)
    expected = {tuple(rs): compose_epsilon([mechanism[r] for r in rs], delta=privacy.delta,
                                           accountant=privacy.accountant) for rs in readers.values()}
    assert {g.group.runs: g.epsilon for g in groups} == pytest.approx(expected, rel=1e-9)
    assert {len(rs) for rs in readers.values()} == {1}  # no record was trained twice
    # The moved record's ε is one weekly run's, not two runs' composition (0.141 in the issue).
    [moved_group] = [g for g in groups if g.group.runs == (runs[0],)]
    assert moved_group.epsilon == pytest.approx(compose_epsilon([mechanism[runs[0]]], delta=privacy.delta,
                                                                accountant=privacy.accountant))
    assert moved_group.epsilon <= privacy.weekly_epsilon + 1e-9
