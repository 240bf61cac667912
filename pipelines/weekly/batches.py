"""Bounded-memory I/O of the weekly steps: staged objects move through local files, rows through batches.

A step downloads its input object to a local work folder (``get_file``: a copy, or a ranged multipart
download on S3), reads it ``ingest.batch_rows`` records at a time, writes its outputs incrementally to
local files and uploads them (``put_file``: multipart on S3) before deleting the folder. What a step
holds in memory is one batch plus the state its logic truly needs over the whole partition (dedup: 32
bytes of hash per record; PII: the token map), never the partition's rows.

The work folder lives under ``$PIPELINE_WORK_DIR`` (default: the system temp folder).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pipelines.serialize import iter_parquet_batches
from pipelines.storage import ObjectStore, get_file, put_file

log = logging.getLogger("pipelines.weekly")
WORK_DIR_ENV = "PIPELINE_WORK_DIR"
PROGRESS_SECONDS = 30.0


@contextlib.contextmanager
def work_folder(name: str) -> Iterator[Path]:
    """A fresh local folder for one step's files, deleted on exit (it may hold raw, unmasked text)."""
    base = os.environ.get(WORK_DIR_ENV) or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"weekly-{name}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def download(store: ObjectStore, key: str, folder: Path, name: str = "input") -> Path:
    """The object at ``key`` as a local file in ``folder`` (streamed)."""
    path = folder / name
    get_file(store, key, path)
    return path


def iter_staged_rows(path: Path, *, batch_rows: int, columns: list[str] | None = None) -> Iterator[list[dict]]:
    """The rows of a staged Parquet file, a batch at a time."""
    return iter_parquet_batches(path, batch_rows=batch_rows, columns=columns)


def iter_jsonl_batches(path: Path, *, batch_rows: int) -> Iterator[list[dict]]:
    """The objects of a local JSON Lines file (one per line), a batch at a time."""
    batch: list[dict] = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            batch.append(json.loads(line))
            if len(batch) == batch_rows:
                yield batch
                batch = []
    if batch:
        yield batch


class JsonlFile:
    """A local JSON Lines file written line by line (sorted keys, as ``serialize.jsonl_bytes``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._fh: IO[bytes] = open(path, "wb")

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._fh.write((json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
            self.lines += 1

    def write_raw(self, line: bytes) -> None:
        self._fh.write(line)
        self.lines += 1

    def close(self) -> Path:
        if not self._fh.closed:
            self._fh.close()
        return self.path

    def __enter__(self) -> JsonlFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upload(store: ObjectStore, key: str, path: Path) -> str:
    """Store a local file under ``key`` (streamed); returns ``key``."""
    put_file(store, key, path)
    return key


def release_input(store: ObjectStore, *, key: str, staging: str) -> None:
    """Delete a step's staged input once the step has written its outputs and report (staging would
    otherwise hold the partition once per step). Inputs outside the run's ``staging`` are kept.

    A step re-run after it succeeded finds its input gone: re-run the partition from ``ingest_landing``."""
    if key.startswith(staging):
        store.delete(key)


class Progress:
    """Records/s of a step in the logs: every ``PROGRESS_SECONDS`` while it runs, and once at the end."""

    def __init__(self, step: str, where: str) -> None:
        self.step, self.where = step, where
        self.records = 0
        self.bytes = 0
        self.started = self._last = time.perf_counter()

    def add(self, records: int, nbytes: int = 0) -> None:
        # Every step calls this once per batch, after the batch was written: the moment to hand its memory back.
        release_memory()
        self.records += records
        self.bytes += nbytes
        now = time.perf_counter()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            log.info("%s %s: %d records so far, %.0f records/s", self.step, self.where, self.records, self.rate)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def done(self) -> None:
        log.info("%s %s: %d records in %.1f s, %.0f records/s%s", self.step, self.where, self.records, self.seconds,
                 self.rate, f", {self.bytes / self.seconds / 1e6:.1f} MB/s" if self.bytes and self.seconds else "")


def release_memory() -> None:
    """Hand the memory of freed batches back to the operating system (Arrow's pool, then glibc's heap).

    A batch is a few thousand texts of a few KB: glibc keeps the freed arenas and Arrow's mimalloc pool keeps
    its pages, so a step's RSS crept with the partition although it held one batch at a time (340 MB at 10k
    documents, 550 MB at 100k). Cost: well under a millisecond when little is free.
    """
    arrow = sys.modules.get("pyarrow")  # only a step that already imported Arrow has a pool to release
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function or None
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)  # absent on musl
