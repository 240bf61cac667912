"""Deterministic encodings: curated Parquet and canonical JSON (same value, same bytes)."""

from __future__ import annotations

from pipelines.serialize import canonical_json, get_jsonl, jsonl_bytes, parquet_bytes, put_json, read_parquet_rows
from pipelines.standardize import CURATED_COLUMNS
from pipelines.storage import LocalObjectStore

from _curated_rows import ROWS


def test_parquet_bytes_is_deterministic_and_round_trips():
    first = parquet_bytes(ROWS)
    second = parquet_bytes([dict(r) for r in ROWS])
    assert first == second
    assert read_parquet_rows(first) == ROWS
    assert list(read_parquet_rows(first)[0]) == list(CURATED_COLUMNS)


def test_parquet_bytes_differ_when_rows_differ():
    assert parquet_bytes(ROWS) != parquet_bytes(ROWS[:2])
    assert read_parquet_rows(parquet_bytes([])) == []


def test_canonical_json_is_key_order_independent():
    assert canonical_json({"b": 1, "a": "é"}) == canonical_json({"a": "é", "b": 1}) == '{\n "a": "é",\n "b": 1\n}\n'.encode()


def test_json_helpers_round_trip_through_a_store(tmp_path):
    store = LocalObjectStore(tmp_path)
    put_json(store, "r/report.json", {"b": [1, 2], "a": "é"})
    assert store.get("r/report.json") == canonical_json({"a": "é", "b": [1, 2]})
    store.put("r/rows.jsonl", jsonl_bytes([{"b": 1, "a": 2}, {"c": "合同"}]))
    assert store.get("r/rows.jsonl") == '{"a": 2, "b": 1}\n{"c": "合同"}\n'.encode()
    assert get_jsonl(store, "r/rows.jsonl") == [{"a": 2, "b": 1}, {"c": "合同"}]
