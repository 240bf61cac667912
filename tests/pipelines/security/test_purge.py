"""Erasure end to end on a local store: a record built by the weekly flow is gone from every object."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.dedup.index import decode_segment
from pipelines.dedup.normalize import content_hash
from pipelines.partition import Interval
from pipelines.publish import latest_commit, read_committed_rows
from pipelines.release_requests import list_release_requests
from pipelines.review.queue import read_queue, write_queue
from pipelines.security.audit import read_audit
from pipelines.security.purge import PurgeError, purge_record
from pipelines.serialize import read_parquet_rows, sha256_hex
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

W1 = Interval.parse("2026-10-04_2026-10-11")
W2 = Interval.parse("2026-10-11_2026-10-18")
SECRET = "Zebulon Quartermaine signed the settlement for the warehouse lease."
SECRET_HASH = content_hash(SECRET)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / config.storage.bucket)


def _land(store, key, records):
    store.put(key, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def _scan(store) -> list[str]:
    """Keys of every object that still holds the secret text, one of its ids, or its content hash."""
    dirty = []
    for info in store.list(""):
        data = store.get(info.key)
        views = [data]
        if info.key.endswith(".parquet"):
            views.append(json.dumps(read_parquet_rows(data), ensure_ascii=False).encode())
        if info.key.endswith(".seg"):
            views = [decode_segment(data)["h"].tobytes()]
        if any(b"Zebulon" in v or b"REC-ZQ" in v for v in views) or \
                (info.key.endswith((".seg", "hashes.bin")) and SECRET_HASH in views[0]):
            dirty.append(info.key)
    return sorted(dirty)


def _build(config, store):
    _land(store, "landing/legal/2026-10-05/a.jsonl", [
        {"id": "L-1", "text": "The tenant renewed the office lease for two years."},
        {"id": "REC-ZQ-1", "text": SECRET},
        {"id": "L-2", "text": "The court dismissed the appeal on procedural grounds."},
        {"id": "REC-ZQ-COPY", "text": f"  {SECRET}  "},  # same text after whitespace folding: a duplicate
    ])
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=W1))
    # A later file of the same week: a second version of week 1; the first one still holds the secret.
    _land(store, "landing/legal/2026-10-06/b.jsonl", [{"id": "L-3", "text": "The arbitration clause was upheld."}])
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=W1))
    _land(store, "landing/legal/2026-10-12/c.jsonl", [
        {"id": "L-4", "text": "Both parties agreed to mediation before trial."},
        {"id": "REC-ZQ-2", "text": SECRET},  # a copy in a later week: duplicate_of_earlier_partition
    ])
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=W2))
    commit = latest_commit(store, f"curated/legal/{W1.name}")
    write_queue(store, domain="legal", interval=W1.name, version=commit.version, labels=["contract", "litigation"],
                items=[{"id": i, "domain": "legal", "text": t, "predicted_label": "contract", "confidence": 0.5,
                        "reason": "low_confidence", "review_label": None, "reviewer": None, "reviewed_at": None}
                       for i, t in (("REC-ZQ-1", SECRET), ("L-1", "The tenant renewed the office lease for two years."))])
    store.put(f"review/legal/{W1.name}/reviews-1.jsonl",
              b'{"id": "REC-ZQ-1", "predicted_label": "contract", "review_label": "contract", "reviewer": "r"}\n')
    # A console release request carrying the record as its correction (pipelines.release_requests).
    store.put(f"review/releases/legal/{W1.name}/{'c' * 32}.json",
              json.dumps({"ids": ["0123456789ab"], "why": "fixed", "who": "console:rob", "requested_at": "t",
                          "corrected": {"id": "REC-ZQ-1", "text": SECRET}}).encode())


def test_purged_record_is_gone_from_every_object(env):
    config, store = env
    _build(config, store)
    before = _scan(store)
    # The control: the secret really is spread over landing, versions, quarantine, index and the queue.
    assert {k.split("/")[0] for k in before} == {"landing", "curated", "quarantine", "index", "review"}
    assert len([k for k in before if k.endswith("/data.parquet")]) == 2  # both versions of week 1

    result = purge_record(config=config, store=store, domain="legal", record_id="REC-ZQ-1", who="dpo@example.com",
                          why="erasure request 2026-117")

    assert _scan(store) == []
    assert result.records_found == 3 and result.landing_records_removed == 3
    assert result.landing_files_rewritten == ["landing/legal/2026-10-05/a.jsonl", "landing/legal/2026-10-12/c.jsonl"]
    assert [(r["interval"], r["records"], r["duplicates"]) for r in result.republished] == [
        (W1.name, 1, 1), (W2.name, 0, 1)]
    assert len(result.versions_deleted) == 3 and result.index_entries_removed == 2  # in both weeks' segments
    # Committed data: exactly the other records, counts reconcile.
    _commit, rows = read_committed_rows(store, f"curated/legal/{W1.name}")
    assert [r["id"] for r in rows] == ["L-1", "L-2", "L-3"]
    manifest = json.loads(store.get(latest_commit(store, f"curated/legal/{W1.name}").record["manifest"]))
    assert manifest["counts"]["records"] == {"in": 3, "kept": 3, "duplicate": 0, "quarantined": 0}
    _commit, rows2 = read_committed_rows(store, f"curated/legal/{W2.name}")
    assert [r["id"] for r in rows2] == ["L-4"]
    # Landing keeps every other record on its line (same source_uri, same ids on a re-run).
    assert store.get("landing/legal/2026-10-05/a.jsonl").decode().split("\n")[1:4] == [
        "", '{"id": "L-2", "text": "The court dismissed the appeal on procedural grounds."}', ""]
    # The review queue still verifies (digest updated) and lost only the purged line.
    items, meta = read_queue(store, next(o.key for o in store.list(f"review/legal/{W1.name}/queue-")
                                         if o.key.endswith(".jsonl")))
    assert [i["id"] for i in items] == ["L-1"] and meta["counts"]["queued"] == 1
    assert not store.exists(f"review/legal/{W1.name}/reviews-1.jsonl")
    [request] = list_release_requests(store=store, domain="legal", interval=W1.name)
    assert (request.ids, request.corrected, request.problem) == \
        (("0123456789ab",), None, "its corrected record was erased (purge): ask again if it is still needed")
    # The audit entry says who and why, with hashes only.
    (entry,) = read_audit(store, action="data_deletion")
    assert (entry["who"], entry["why"]) == ("dpo@example.com", "erasure request 2026-117")
    assert sha256_hex(b"REC-ZQ-1") in entry["details"]["record_id_sha256"]
    assert len(entry["details"]["record_id_sha256"]) == 3

    # Re-running the week publishes no trace of it (landing and index agree).
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=W1, run_key="again"))
    _commit, rows = read_committed_rows(store, f"curated/legal/{W1.name}")
    assert [r["id"] for r in rows] == ["L-1", "L-2", "L-3"] and _scan(store) == []


def test_purge_by_text_hash_without_copies(env):
    config, store = env
    _build(config, store)
    result = purge_record(config=config, store=store, domain="legal", text_sha256=SECRET_HASH.hex(),
                          include_copies=False, who="dpo", why="request 9")
    _commit, rows = read_committed_rows(store, f"curated/legal/{W1.name}")
    assert [r["id"] for r in rows] == ["L-1", "L-2", "L-3"]
    # Copies are matched by the hash asked for, so they go as well; their ids were not asked for.
    assert result.landing_records_removed == 3
    index_hashes = np.concatenate([decode_segment(store.get(o.key))["h"] for o in store.list("index/legal/")])
    assert SECRET_HASH not in index_hashes.tolist()


def test_purge_refuses_bad_requests(env):
    config, store = env
    with pytest.raises(PurgeError, match="record_id and/or text_sha256"):
        purge_record(config=config, store=store, domain="legal", who="a", why="b")
    with pytest.raises(PurgeError, match="64 lowercase hex"):
        purge_record(config=config, store=store, domain="legal", text_sha256="abc", who="a", why="b")
    with pytest.raises(PurgeError, match="who asked and why"):
        purge_record(config=config, store=store, domain="legal", record_id="x", who="a", why=" ")


def test_purge_finds_a_record_in_a_version_stored_as_part_files(env):
    import dataclasses
    import random

    from pipelines.publish import version_data_keys

    config, store = env
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, batch_rows=40,
                                                                    max_object_bytes=64 * 1024))
    rng = random.Random(5)
    # Text that does not compress: ~1.2 MB over 400 records, so the version is split into part files.
    filler = [{"id": f"p{i:03d}", "text": "Case notes " + " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(430))}
        for i in range(400)]
    _land(store, "landing/legal/2026-10-05/a.jsonl", [*filler[:250], {"id": "REC-ZQ-1", "text": SECRET}, *filler[250:]])
    process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=W1))
    prefix = f"curated/legal/{W1.name}"
    manifest = json.loads(store.get(latest_commit(store, prefix).record["manifest"]))
    assert len(version_data_keys(manifest)) >= 2 and not store.exists(f"{prefix}/v-{manifest['version']}/data.parquet")
    assert "REC-ZQ-1" in [r["id"] for r in read_committed_rows(store, prefix)[1]]

    result = purge_record(config=config, store=store, domain="legal", record_id="REC-ZQ-1", who="dpo", why="request 12")

    assert result.records_found == 1 and result.landing_records_removed == 1
    assert result.versions_deleted == [f"legal/{W1.name}/v-{manifest['version']}"]
    _commit, rows = read_committed_rows(store, prefix)
    assert sorted(r["id"] for r in rows) == [r["id"] for r in filler]
    assert _scan(store) == []
