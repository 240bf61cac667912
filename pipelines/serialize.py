"""Deterministic bytes for what the pipeline stores: digests, canonical JSON, JSON Lines, curated Parquet.

Same value, same bytes: partition versions and artifact manifests are digests of these encodings, so a
re-run that changes nothing writes nothing new. The ``*_json*`` store helpers read and write staged
reports with the same encodings.
"""

from __future__ import annotations

import hashlib
import io
import json

from pipelines.storage import ObjectStore


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    """Deterministic JSON bytes (sorted keys, no whitespace variance, UTF-8)."""
    return (json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def curated_schema():
    import pyarrow as pa

    from pipelines.standardize import CURATED_COLUMNS

    types = {"rating": pa.int64(), "label_confidence": pa.float64()}
    return pa.schema([pa.field(c, types.get(c, pa.string()), nullable=c not in ("id", "domain", "text")) for c in CURATED_COLUMNS])


def parquet_bytes(rows: list[dict]) -> bytes:
    """Rows as Parquet with a fixed schema and writer options: same rows, same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=curated_schema())
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=["domain", "source", "language", "usage", "label", "arrival_date"],
                   write_statistics=True, store_schema=False)
    return buf.getvalue()


def read_parquet_rows(data: bytes) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def put_json(store: ObjectStore, key: str, value: object) -> None:
    store.put(key, canonical_json(value))


def get_json(store: ObjectStore, key: str) -> dict:
    return json.loads(store.get(key))


def get_jsonl(store: ObjectStore, key: str) -> list[dict]:
    return [json.loads(line) for line in store.get(key).decode("utf-8").splitlines() if line]
