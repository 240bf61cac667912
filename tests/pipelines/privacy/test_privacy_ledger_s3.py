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
