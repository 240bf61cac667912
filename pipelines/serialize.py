"""Deterministic bytes for what the pipeline stores: digests, canonical JSON, JSON Lines, curated Parquet.

Same value, same bytes: partition versions and artifact manifests are digests of these encodings, so a
re-run that changes nothing writes nothing new. The ``*_json*`` store helpers read and write staged
reports with the same encodings.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipelines.storage import ObjectStore

DICTIONARY_COLUMNS = ["domain", "source", "language", "usage", "label", "arrival_date"]
HASH_CHUNK = 8 * 1024 * 1024


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
    pq.write_table(table, buf, **_PARQUET_OPTIONS)
    return buf.getvalue()


_PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": DICTIONARY_COLUMNS, "write_statistics": True,
                    "store_schema": False}


class ParquetParts:
    """Curated rows written incrementally to local Parquet files, in bounded memory.

    Rows are regrouped into row groups of exactly ``batch_rows`` (the last one shorter), so the bytes
    are a function of the row sequence alone, not of how callers batched it: a partition whose rows fit
    in one row group gets the same bytes as ``parquet_bytes``. A file that reaches ``max_bytes`` is
    closed and the next rows go to a new part file (``part-00000.parquet``, ...) in ``folder``.

    Use as a context manager or call ``close()``; ``paths`` are the files written, ``rows`` the count.
    """

    def __init__(self, folder: str | Path, *, batch_rows: int, max_bytes: int | None = None,
                 stem: str = "part") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.batch_rows = batch_rows
        self.max_bytes = max_bytes
        self.stem = stem
        self.paths: list[Path] = []
        self.rows = 0
        self._pending: list[dict] = []
        self._tables: list = []  # Arrow tables of write_arrow, fewer than batch_rows rows together
        self._table_rows = 0
        self._writer = None
        self._schema = curated_schema()

    def _flush(self, rows) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            path = self.folder / f"{self.stem}-{len(self.paths):05d}.parquet"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self._schema, **_PARQUET_OPTIONS)
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=self._schema)
        self._writer.write_table(table)
        if self.max_bytes is not None and self.paths[-1].stat().st_size >= self.max_bytes:
            self._writer.close()
            self._writer = None

    def write(self, rows: Iterable[dict]) -> None:
        """Append rows (any batching)."""
        if self._tables:
            raise ValueError("ParquetParts: rows and Arrow batches cannot be mixed in one file")
        pending = self._pending
        for row in rows:
            pending.append(row)
            if len(pending) == self.batch_rows:
                self._flush(pending)
                pending = self._pending = []
                self.rows += self.batch_rows

    def write_arrow(self, batch) -> None:
        """Append an Arrow record batch or table of the curated columns (any batching): the same bytes as
        ``write`` of its rows, without turning them into dicts and back."""
        import pyarrow as pa

        if self._pending:
            raise ValueError("ParquetParts: rows and Arrow batches cannot be mixed in one file")
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if not table.num_rows:
            return
        self._tables.append(table.select(self._schema.names).cast(self._schema))
        self._table_rows += table.num_rows
        while self._table_rows >= self.batch_rows:
            whole = pa.concat_tables(self._tables)
            self._flush(whole.slice(0, self.batch_rows).combine_chunks())
            rest = whole.slice(self.batch_rows)
            self._tables, self._table_rows = ([rest] if rest.num_rows else []), rest.num_rows
            self.rows += self.batch_rows

    def close(self) -> list[Path]:
        """Write what is pending and close; an empty partition still gets one (empty) file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._tables:
            self.rows += self._table_rows
            self._flush(pa.concat_tables(self._tables).combine_chunks())
            self._tables, self._table_rows = [], 0
        if self._pending or not self.paths:
            if self._pending:
                self.rows += len(self._pending)
                self._flush(self._pending)
            else:  # no rows at all: one empty file, as parquet_bytes([]) writes
                path = self.folder / f"{self.stem}-00000.parquet"
                self.paths.append(path)
                pq.write_table(pa.Table.from_pylist([], schema=self._schema), path, **_PARQUET_OPTIONS)
            self._pending = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.paths

    def __enter__(self) -> ParquetParts:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def iter_parquet_batches(path: str | Path, *, batch_rows: int, columns: list[str] | None = None) -> Iterator[list[dict]]:
    """The rows of a local Parquet file, ``batch_rows`` at a time (one row group in memory at most)."""
    import pyarrow.parquet as pq

    # pre_buffer=False: with Arrow's default (True) the reader keeps every row group it pre-buffered until the
    # file is closed, so a step's Arrow memory grew by a row group every few batches over the whole file.
    with pq.ParquetFile(path, pre_buffer=False) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pylist()


def iter_arrow_batches(path: str | Path, *, batch_rows: int, columns: list[str] | None = None) -> Iterator:
    """The Arrow record batches of a local Parquet file, ``batch_rows`` rows at a time (one row group in
    memory at most; see ``iter_parquet_batches``)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path, pre_buffer=False) as pf:
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_parquet_rows(data: bytes) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def put_json(store: ObjectStore, key: str, value: object) -> None:
    store.put(key, canonical_json(value))


def get_json(store: ObjectStore, key: str) -> dict:
    return json.loads(store.get(key))


def get_jsonl(store: ObjectStore, key: str) -> list[dict]:
    return [json.loads(line) for line in store.get(key).decode("utf-8").splitlines() if line]
