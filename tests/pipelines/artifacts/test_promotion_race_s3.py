"""Promotion and rollback against a real S3 server (SeaweedFS, conditional puts with If-None-Match: *)."""

from __future__ import annotations

import os
import threading

import pytest

from _artifacts_helpers import flip_last_byte, make_folder
from pipelines.artifacts import (
    ArtifactCorrupt,
    GateDecision,
    current_production,
    promote,
    promotion_history,
    push_artifact,
    rollback,
    verify_artifact,
)
from pipelines.storage import S3ObjectStore

PASS = GateDecision(True, "passed: test", 0.0, metric="accuracy")


def _store(bucket: str) -> S3ObjectStore:
    return S3ObjectStore(bucket=bucket, endpoint_url=os.environ["PIPELINE_S3_ENDPOINT_URL"])


class BarrierS3Store(S3ObjectStore):
    """Holds the first promotion put of each thread at a barrier, so both aim at the same record number."""

    def __init__(self, barrier: threading.Barrier, **kwargs):
        super().__init__(**kwargs)
        self.barrier = barrier
        self.lost = 0

    def put(self, key, data, *, if_none_match=False):
        if "/promotions/" in key and self.barrier is not None:
            self.barrier.wait(timeout=30)
            self.barrier = None
        ok = super().put(key, data, if_none_match=if_none_match)
        self.lost += not ok
        return ok


@pytest.fixture
def s3_refs(s3_bucket, tmp_path):
    store = _store(s3_bucket)
    refs = [push_artifact(store, make_folder(tmp_path, f"m{i}", seed=f"s{i}", version=f"1.{i}"), domain="legal")
            for i in range(5)]
    return s3_bucket, store, refs


def _run_all(calls):
    results, errors = [None] * len(calls), []

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_two_promoters_racing_for_the_same_number_on_s3(s3_refs):
    bucket, store, refs = s3_refs
    barrier = threading.Barrier(2)
    stores = [BarrierS3Store(barrier, bucket=bucket, endpoint_url=os.environ["PIPELINE_S3_ENDPOINT_URL"])
              for _ in range(2)]
    records = _run_all([lambda s=s, r=r: promote(s, "legal", r, gate=PASS, who=f"worker-{r.version}", why="race")
                        for s, r in zip(stores, refs[:2])])
    assert sum(s.lost for s in stores) == 1  # the server refused exactly one create-only put (412)
    assert sorted(r.number for r in records) == [1, 2]
    first, second = sorted(records, key=lambda r: r.number)
    assert second.previous_artifact_id == first.artifact_id
    assert current_production(store, "legal") == second
    history = promotion_history(store, "legal")
    assert [(r.number, r.artifact_id, r.who) for r in history] == \
        [(2, second.artifact_id, second.who), (1, first.artifact_id, first.who)]


def test_many_concurrent_promotions_and_rollbacks_lose_no_record_on_s3(s3_refs):
    bucket, store, refs = s3_refs
    for ref in refs[:3]:
        promote(store, "legal", ref, gate=PASS, who="seed", why="baseline")
    # distinct targets, none of them production when it starts: every call must succeed whatever the order.
    # (Not a rollback without a target: it picks the latest other artifact when it reads the history, which
    # can be the one another caller is rolling back to, and then one of the two is rightly refused.)
    calls = [
        lambda: promote(_store(bucket), "legal", refs[3], gate=PASS, who="promoter", why="race"),
        lambda: rollback(_store(bucket), "legal", to_artifact_id=refs[0].artifact_id, who="oncall-0", why="race"),
        lambda: rollback(_store(bucket), "legal", to_artifact_id=refs[1].artifact_id, who="oncall-1", why="race"),
        lambda: promote(_store(bucket), "legal", refs[4], gate=PASS, who="promoter-2", why="race"),
    ]
    records = _run_all(calls)
    assert sorted(r.number for r in records) == [4, 5, 6, 7]
    history = promotion_history(store, "legal")
    assert [r.number for r in history] == [7, 6, 5, 4, 3, 2, 1]
    assert current_production(store, "legal") == history[0]
    # every record chains to the one before it: nobody overwrote anybody
    for newer, older in zip(history, history[1:]):
        assert newer.previous_artifact_id == older.artifact_id
    assert sorted(r.who for r in history[:4]) == ["oncall-0", "oncall-1", "promoter", "promoter-2"]


def test_altered_byte_on_s3_fails_verification_and_promotion(s3_refs):
    _, store, refs = s3_refs
    promote(store, "legal", refs[0], gate=PASS, who="seed", why="baseline")
    flip_last_byte(store, f"{refs[1].root}/tokenizer/tokenizer.json")
    with pytest.raises(ArtifactCorrupt) as info:
        verify_artifact(store, refs[1])
    assert info.value.file == "tokenizer/tokenizer.json"
    with pytest.raises(ArtifactCorrupt):
        promote(store, "legal", refs[1], gate=PASS, who="x", why="y")
    assert [r.artifact_id for r in promotion_history(store, "legal")] == [refs[0].artifact_id]
