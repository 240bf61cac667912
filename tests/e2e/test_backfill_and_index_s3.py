"""Backfill order, concurrent weeks and request counts of the dedup index, on the real SeaweedFS server."""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from e2e_helpers import WEEKS, committed, data_digest, jsonl, load_sample, store_and_config

DOMAINS = ("legal", "medical", "finance")


def _run(config, store, week: str, domains=DOMAINS, run_key: str = "t") -> list[dict]:
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef, process_partition, republish_displaced

    targets = []
    for domain in domains:
        result = process_partition(config=config, store=store,
                                   part=PartitionRef(domain=domain, interval=Interval.parse(week), run_key=run_key))
        targets.extend(result["republish"])
    return republish_displaced(config=config, store=store, targets=targets, run_key=run_key) if targets else []


def _state(store, weeks) -> dict:
    out = {}
    for domain in DOMAINS:
        for week in weeks:
            _, manifest = committed(store, domain, week)
            out[(domain, week)] = (data_digest(store, manifest), manifest["counts"]["records"])
    return out


def test_backfill_order_2_3_1_ends_like_1_2_3(s3_server, monkeypatch):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server["PIPELINE_S3_ENDPOINT_URL"], region_name="us-east-1")
    states = []
    republished = []
    for order in ((0, 1, 2), (1, 2, 0)):
        bucket = f"order-{''.join(map(str, order))}-{hashlib.sha1(str(id(states)).encode()).hexdigest()[:6]}"
        client.create_bucket(Bucket=bucket)
        monkeypatch.setenv("PIPELINE_BUCKET", bucket)
        config, store = store_and_config()
        load_sample(store, only=DOMAINS)
        moved = []
        for i in order:
            moved.extend(_run(config, store, WEEKS[i]))
        republished.append(moved)
        states.append(_state(store, WEEKS[:3]))
    assert states[0] == states[1]
    assert republished[0] == []
    # data/sample/README.md #4: medical 2026-10-22 line 4 repeats 2026-10-07 line 7, so back-filling week 1
    # after week 3 re-publishes week 3 (and only what changed).
    assert {(m["domain"], m["interval"]) for m in republished[1] if m["published"]} == {("medical", WEEKS[2])}
    commit, _ = committed(store, "medical", WEEKS[2])
    assert commit["n"] == 2
    removed = commit["changes"]["removed"]
    assert len(removed) == 1 and removed[0]["reason"].startswith("duplicate_of_earlier_partition (first seen 2026-10-07)")


def test_concurrent_weeks_converge(s3_bucket):
    """Weeks 1 and 3 ingested at the same time (catchup/backfill): no index update is lost."""
    config, store = store_and_config()
    load_sample(store, only=("medical",))
    errors = []

    def go(week):
        try:
            _run(config, store, week, domains=("medical",), run_key=f"c{week[:10]}")
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(w,)) for w in (WEEKS[0], WEEKS[2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _, week3 = committed(store, "medical", WEEKS[2])
    dups = jsonl(store, week3["files"]["duplicates"])
    assert ("landing/medical/2026-10-22/batch-01.jsonl#L4", "duplicate_of_earlier_partition") in {
        (d["source_uri"], d["reason"]) for d in dups}


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, **kwargs):
        self.calls += 1


def test_index_requests_do_not_grow_with_index_size(s3_bucket):
    """Same-size weekly batches against an index holding 1..24 earlier weeks: requests stay bounded."""
    import boto3

    from pipelines.config import load_config
    from pipelines.dedup.index import ENTRY, HashIndex
    from pipelines.storage import S3ObjectStore

    config = load_config()
    client = boto3.client("s3", endpoint_url=config.storage.endpoint_url, region_name="us-east-1")
    counter = _Counter()
    client.meta.events.register("before-call.s3", counter)
    store = S3ObjectStore(bucket=config.storage.bucket, endpoint_url=config.storage.endpoint_url, client=client)
    buckets, compact_after, per_week = 16, 4, 400
    counts = []
    for week in range(24):
        hashes = [hashlib.sha256(f"w{week}-r{i}".encode()).digest() for i in range(per_week)]
        index = HashIndex(store=store, prefix="index/bench", buckets=buckets, compact_after=compact_after)
        before = counter.calls
        index.lookup(np.array(hashes, dtype="S32"))
        batch = np.empty(per_week, dtype=ENTRY)  # distinct hashes: no merge needed
        batch["h"], batch["d"] = hashes, 20000 + week * 7
        index.add(batch, tag=f"w{week:03d}")
        counts.append(counter.calls - before)
    # Per touched bucket: 1 LIST + at most compact_after+1 GETs + 1 PUT, plus a compaction
    # (1 PUT + compact_after+1 DELETEs): a bound that does not depend on the number of weeks.
    bound = buckets * (1 + (compact_after + 1) + 1 + 1 + (compact_after + 1))
    assert max(counts) <= bound, counts
    assert max(counts[12:]) <= max(counts[:12]), counts  # no upward trend as the index triples
    objects = sum(1 for _ in store.list("index/bench/"))
    assert objects <= buckets * (compact_after + 1)  # objects: bounded by buckets, not by hashes
