"""The ledger's race on the real S3 server (SeaweedFS): create-only puts and strongly consistent listing."""

from __future__ import annotations

import datetime as dt
import os
import random

from pipelines.privacy import budget_report, plan_run, read_ledger
from pipelines.storage import S3ObjectStore
from privacy_helpers import Q, STEPS, PausingStore, race


def test_concurrent_reservations_on_s3_grant_at_most_one_per_partition(config, s3_bucket):
    inner = S3ObjectStore(bucket=s3_bucket, endpoint_url=os.environ["PIPELINE_S3_ENDPOINT_URL"])
    store = PausingStore(inner, jitter=random.Random(11))
    weeks = [f"{dt.date(2026, 10, 4) + dt.timedelta(days=7 * i)}_{dt.date(2026, 10, 11) + dt.timedelta(days=7 * i)}"
             for i in range(5)]
    outcomes = {}
    for i, week in enumerate(weeks):
        plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[week],
                        sample_rate=Q, steps=STEPS)
        outcomes[week] = race(config, store, [plan, plan], [f"a{i}", f"b{i}"])
    assert all(len(o) == 2 and list(o.values()).count("granted") <= 1 for o in outcomes.values())
    report = {s.partition: s for s in budget_report(config=config, store=store, domain="medical", partitions=weeks)}
    for week, o in outcomes.items():
        assert report[week].runs == tuple(r for r, v in o.items() if v == "granted")
        assert report[week].over_budget() == []
    # Every reservation left exactly one decision behind on the server.
    records = read_ledger(config=config, store=store, domain="medical")
    assert len(records) == 10 and all(r.decision is not None for r in records)


def test_record_sets_and_migration_on_s3(config, s3_bucket):
    """The per-record ledger on the real server: record sets create-only, a backfilled record not retrained."""
    from pipelines.privacy import RecordSet, record_report, reserve_budget, untrained_records
    from pipelines.privacy.migrate import migrate_ledger
    from privacy_helpers import WEEKS, digest, publish_partition

    store = S3ObjectStore(bucket=s3_bucket, endpoint_url=os.environ["PIPELINE_S3_ENDPOINT_URL"])
    publish_partition(store, domain="medical", interval=WEEKS[2], names=["x", "d"], committed_at="2026-01-01T00:00:00Z")
    legacy = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[2]],
                      sample_rate=Q, steps=STEPS)
    reserve_budget(config=config, store=store, plan=legacy, run_id="legacy-w3")
    publish_partition(store, domain="medical", interval=WEEKS[0], names=["f", "x"], committed_at="2099-01-01T00:00:00Z")
    assert [s.action for s in migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                                             artifacts_prefix="models")] == ["migrated"]
    fresh = untrained_records(config=config, store=store, domain="medical",
                              candidates=RecordSet.of(digest(n) for n in "fxd"))
    assert fresh == RecordSet.of([digest("f")])
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS, records=fresh)
    reserve_budget(config=config, store=store, plan=plan, run_id="weekly-w1")
    groups = {s.group.runs: s.group.count for s in record_report(config=config, store=store, domain="medical")}
    assert groups == {("legacy-w3",): 2, ("weekly-w1",): 1}
