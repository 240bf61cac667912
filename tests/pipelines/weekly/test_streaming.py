"""Bounded memory: every step streams its partition in batches of ``ingest.batch_rows``; a curated version
larger than ``ingest.max_object_bytes`` is written in part files under one commit. Batching changes no
record, count or quarantine line; parts read back as the one file they replace."""

from __future__ import annotations

import dataclasses
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_config
from pipelines.partition import Interval
from pipelines.publish import latest_commit, read_committed_rows, version_data_keys
from pipelines.serialize import ParquetParts, curated_schema, parquet_bytes, read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition
from pipelines.weekly.shrink import version_signatures

WEEK = Interval.parse("2026-10-04_2026-10-11")
PREFIX = f"curated/legal/{WEEK.name}"
WORDS = "court lease contract tenant appeal judgment claim party notice clause order hearing".split()


def _env(tmp_path, name, **ingest):
    root = tmp_path / name
    config = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": f"file://{root}"})
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, **ingest))
    return config, LocalObjectStore(root / config.storage.bucket)


def _records(n, seed=3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = f"Case {i}: " + " ".join(rng.choice(WORDS) for _ in range(40))
        if i % 4 == 0:
            text += f" call 1380013{i % 7:04d}"  # 7 distinct phones over the partition: tokens across batches
        if i % 9 == 0 and i:
            text = out[i - 9]["text"]  # exact duplicate of an earlier record
        out.append({"id": f"r{i:03d}", "text": text})
    out.append({"id": "bad", "text": "test"})  # quarantined by the drop pattern
    return out


def _land(store, records):
    for day, chunk in (("2026-10-05", records[: len(records) // 2]), ("2026-10-07", records[len(records) // 2:])):
        store.put(f"landing/legal/{day}/a.jsonl", "".join(json.dumps(r) + "\n" for r in chunk).encode())


def _published(store):
    manifest = json.loads(store.get(latest_commit(store, PREFIX).record["manifest"]))
    return manifest, read_committed_rows(store, PREFIX)[1]


def test_batches_of_three_give_the_records_counts_and_quarantine_of_one_batch(tmp_path):
    records = _records(60)
    whole_config, whole = _env(tmp_path, "whole")
    small_config, small = _env(tmp_path, "small", batch_rows=3)
    for config, store in ((whole_config, whole), (small_config, small)):
        _land(store, records)
        assert process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))[
            "published"]
    (m1, rows1), (m2, rows2) = _published(whole), _published(small)
    assert rows1 == rows2  # PII tokens numbered across batches as over the whole partition
    assert {r["text"].rsplit(" ", 1)[-1] for r in rows1 if "[PHONE_" in r["text"]} == {f"[PHONE_{k}]" for k in range(1, 8)}
    assert m1["counts"] == m2["counts"] and m1["steps"] == m2["steps"]
    assert m1["counts"]["records"] == {"in": 61, "kept": 54, "duplicate": 6, "quarantined": 1}
    for name in ("quarantine", "duplicates"):
        assert whole.get(m1["files"][name]) == small.get(m2["files"][name])
    # One row group of 61 rows is the bytes parquet_bytes always wrote; 3-row groups are other bytes.
    assert whole.get(m1["files"]["data"]) == parquet_bytes(rows1)
    assert read_parquet_rows(small.get(m2["files"]["data"])) == rows1


def test_a_version_above_max_object_bytes_is_split_into_parts_under_one_commit(tmp_path):
    config, store = _env(tmp_path, "parts", batch_rows=40, max_object_bytes=64 * 1024)
    rng = random.Random(5)
    # Text that does not compress (zstd): ~1.2 MB of it over 400 records.
    records = [{"id": f"p{i:03d}", "text": "Case notes " + " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(430))}
        for i in range(400)]
    _land(store, records)
    part = PartitionRef(domain="legal", interval=WEEK)
    assert process_partition(config=config, store=store, part=part)["published"] is True
    manifest, rows = _published(store)
    keys = version_data_keys(manifest)
    assert len(keys) >= 2 and keys == [f"{PREFIX}/v-{manifest['version']}/data/part-{k:05d}.parquet"
                                       for k in range(len(keys))]
    assert manifest["files"]["data"] == f"{PREFIX}/v-{manifest['version']}/data/"
    assert sum(p["rows"] for p in manifest["data_parts"]) == manifest["counts"]["records"]["kept"] == len(rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in records)[: len(rows)]
    assert all(len(store.get(k)) < 64 * 1024 + 200 * 1024 for k in keys)  # closed at the first row group past the limit
    assert len(version_signatures(store, PREFIX, manifest["version"])) == len(rows)
    # A re-run is byte-identical: same parts, same version, no new commit.
    again = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK,
                                                                             run_key="again"))
    assert (again["published"], again["reason"], again["version"]) == (False, "unchanged", manifest["version"])


def test_validation_checks_uniqueness_over_the_whole_partition_across_chunks_and_parts(tmp_path):
    from pipelines.weekly import ValidationFailed, validate_batch
    from pipelines.weekly.parts import name_parts

    config, store = _env(tmp_path, "v")
    base = {"domain": "legal", "source": "files", "source_uri": "landing/legal/2026-10-05/a.jsonl#L1",
            "arrival_date": "2026-10-05", "language": "en", "usage": "train", "label_source": None}
    rows = [dict(base, id=i, text=f"text {i}", content_sha256=f"{n:064x}") for n, i in enumerate(["a", "b", "a"])]

    def staged(part, key, batch):
        with ParquetParts(tmp_path / key.replace("/", "_"), batch_rows=2) as out:
            out.write(batch)
            (path,) = out.close()
        store.put_file(key, path)
        store.put(part.staging(config, "ingest.json"), json.dumps({"records_in": 3, "rejected": 0}).encode())
        store.put(part.staging(config, "dedup.json"), json.dumps({"kept": 3, "duplicate": 0}).encode())

    # One part in chunks of 2 rows: no one suite run sees both "a"s.
    whole = PartitionRef(domain="legal", interval=WEEK, run_key="chunks")
    staged(whole, whole.staging(config, "labelled.parquet"), rows)
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_unique"):
        validate_batch(config=config, store=store, part=whole, key=whole.staging(config, "labelled.parquet"),
                       chunk_rows=2)
    report = json.loads(store.get(whole.staging(config, "validation.json")))
    assert (report["success"], report["rows"], report["chunks"]) == (False, 3, {"rows": 2, "count": 2})
    assert [(f["expectation"], f.get("column"), f.get("scope")) for f in report["failed"]] == [
        ("expect_column_values_to_be_unique", "id", "partition")]

    # Two shards' parts, each valid on its own (finish_shard validated them): the partition is not.
    sharded = PartitionRef(domain="legal", interval=WEEK, run_key="parts")
    keys = [sharded.shard_ref(k).staging(config, "labelled.parquet") for k in (0, 1)]
    staged(sharded, keys[0], rows[:2])
    staged(sharded, keys[1], rows[2:])
    name_parts(store, sharded.staging(config, "labelled.parquet"), keys)
    with pytest.raises(ValidationFailed):
        validate_batch(config=config, store=store, part=sharded, key=sharded.staging(config, "labelled.parquet"))
    report = json.loads(store.get(sharded.staging(config, "validation.json")))
    assert report["rows"] == 3
    assert [(f.get("column"), f.get("scope")) for f in report["failed"]] == [("id", "partition")]


def test_parquet_parts_regroup_rows_whatever_the_batching(tmp_path):
    rows = [{"id": f"x{i}", "domain": "legal", "text": f"t{i}"} for i in range(10)]
    outs = []
    for name, sizes in (("a", [10]), ("b", [1, 2, 3, 4]), ("c", [7, 0, 3])):
        with ParquetParts(tmp_path / name, batch_rows=4) as out:
            at = 0
            for size in sizes:
                out.write(rows[at:at + size])
                at += size
            (path,) = out.close()
        outs.append(path.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert pq.ParquetFile(tmp_path / "a" / "part-00000.parquet").metadata.num_row_groups == 3


def test_parquet_parts_write_the_same_bytes_from_arrow_batches(tmp_path):
    """Publication copies Arrow batches (``write_arrow``): the same bytes as rows written one by one,
    whatever the batching, files split at ``max_bytes`` included; rows and batches do not mix."""
    rows = [{"id": f"x{i}", "domain": "legal", "text": f"text {i} " * (i % 7 + 1), "usage": "train" if i % 3 else None,
             "rating": i % 5 or None, "label_confidence": i / 10 if i % 2 else None} for i in range(23)]
    with ParquetParts(tmp_path / "rows", batch_rows=4, max_bytes=1500) as out:
        out.write(rows)
        expected = [p.read_bytes() for p in out.close()]
    assert len(expected) > 1
    table = pa.Table.from_pylist(rows, schema=curated_schema())
    for name, sizes in (("one", [23]), ("uneven", [1, 0, 5, 9, 8]), ("small", [3] * 7 + [2])):
        with ParquetParts(tmp_path / name, batch_rows=4, max_bytes=1500) as out:
            at = 0
            for size in sizes:
                out.write_arrow(table.slice(at, size).to_batches()[0] if size else table.slice(at, 0))
                at += size
            assert [p.read_bytes() for p in out.close()] == expected, name
        assert out.rows == 23
    with ParquetParts(tmp_path / "empty", batch_rows=4) as out:
        out.write_arrow(table.slice(0, 0))
        assert [p.read_bytes() for p in out.close()] == [parquet_bytes([])]
    with ParquetParts(tmp_path / "mixed", batch_rows=4) as out:
        out.write(rows[:1])
        with pytest.raises(ValueError, match="cannot be mixed"):
            out.write_arrow(table.slice(1, 2))
