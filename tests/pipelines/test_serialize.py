"""Deterministic encodings: curated Parquet and canonical JSON (same value, same bytes)."""

from __future__ import annotations

from pipelines.serialize import canonical_json, get_jsonl, jsonl_bytes, parquet_bytes, put_json, read_parquet_rows
from pipelines.standardize import CURATED_COLUMNS, to_row
from pipelines.storage import LocalObjectStore

ROWS = [
    to_row({"id": "a1", "domain": "legal", "text": "The lease ends in May.", "label": "contract", "source": "files",
            "source_uri": "landing/legal/2024-06-03/a.jsonl#L1", "arrival_date": "2024-06-03", "created_at": None,
            "language": "en", "usage": "train"}),
    to_row({"id": "fb-r1", "domain": "legal", "text": "q\na", "label": None, "source": "feedback",
            "source_uri": "landing/feedback/2024-06-04/f.jsonl#L1", "arrival_date": "2024-06-04",
            "created_at": "2024-06-04T10:00:00Z", "language": "other", "usage": "review", "question": "q",
            "answer": "a", "rating": 2, "correction": "b", "model_version": "m1", "request_id": "r1"}),
    to_row({"id": "a3", "domain": "legal", "text": "合同已终止", "label": None, "source": "files",
            "source_uri": "landing/legal/2024-06-05/b.csv#L2", "arrival_date": "2024-06-05", "created_at": None,
            "language": "zh", "usage": "train"}),
]


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
