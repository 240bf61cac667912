"""The read-apply-write helper of the chain steps (``Step``), streaming in bounded memory.

A step reads the staged rows at ``key`` one batch (``ingest.batch_rows`` records) at a time, applies its
logic to each batch and appends what it kept to its output Parquet and what it rejected to its
rejections, both local files uploaded at the end (``pipelines.weekly.batches``). Counts of the batches
are summed. Logic that needs the whole partition keeps only what it needs (the PII token map, the
labeller's (id, confidence) pairs) and hands its partition-wide result back through ``finish``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.ingest.parse import Rejection
from pipelines.serialize import ParquetParts, put_json
from pipelines.storage import ObjectStore
from pipelines.weekly.batches import (
    JsonlFile, Progress, download, iter_staged_rows, log, release_input, upload, work_folder,
)
from pipelines.weekly.layout import PartitionRef
from pipelines.weekly.results import StepResult


@dataclass(frozen=True)
class Applied:
    """What a step's logic made of one batch of its input rows.

    ``files`` are further staged outputs by name (``duplicates.jsonl``...); ``extra`` goes into the report.
    ``counts`` of the batches are summed (numbers added, mappings merged, anything else: the last value).
    """

    rows: Sequence[dict]
    rejections: Sequence[Rejection] = ()
    counts: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


# Applied to each batch; an Apply may also have ``finish(written) -> Applied`` (no rows), called once after
# the last batch with a function that reads back the rows the step wrote (batch by batch).
Apply = Callable[[list[dict]], Applied]
Prepare = Callable[[PipelineConfig, ObjectStore, PartitionRef], Apply]
Reader = Callable[..., Iterator[list[dict]]]


def merge_counts(total: dict[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
    """Add one batch's counts to the step's totals (in place; returns ``total``)."""
    for name, value in batch.items():
        if isinstance(value, Mapping):
            merge_counts(total.setdefault(name, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name in total:
            total[name] += value
        else:
            total[name] = value
    return total


@dataclass(frozen=True)
class Step:
    """A chain step: streams the rows at ``key`` through its logic, writes ``<output>.parquet`` (its
    result's ``key``), ``rejected.<name>.jsonl`` and the report ``<name>.json``, then deletes its staged
    input (``release_input``).

    ``prepare(config, store, part)`` loads what the step needs for this partition (rules, lexicon,
    labeller) and returns the function applied to each batch of rows. ``read(path, batch_rows=...)``
    yields the batches of the downloaded input (staged Parquet by default).
    """

    name: str
    prepare: Prepare
    output: str
    read: Reader = iter_staged_rows

    def __post_init__(self) -> None:
        object.__setattr__(self, "__doc__", self.prepare.__doc__)

    @property
    def __name__(self) -> str:
        return self.prepare.__name__

    def __call__(self, *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
        started = time.perf_counter()
        batch_rows = config.ingest.batch_rows
        apply = self.prepare(config, store, part)
        progress = Progress(self.name, part.label)
        counts: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        kept = rejected = 0
        with work_folder(self.name) as folder:
            source = download(store, key, folder)
            with ParquetParts(folder / "out", batch_rows=batch_rows) as out, \
                    JsonlFile(folder / "rejected.jsonl") as rejections:

                def take(applied: Applied) -> None:
                    nonlocal kept, rejected
                    out.write(applied.rows)
                    rejections.write(r.to_dict() for r in applied.rejections)
                    kept += len(applied.rows)
                    rejected += len(applied.rejections)
                    merge_counts(counts, applied.counts)
                    extra.update(applied.extra)
                    files.update(applied.files)

                seen = False
                for batch in self.read(source, batch_rows=batch_rows):
                    seen = True
                    take(apply(batch))
                    progress.add(len(batch))
                if not seen:  # an empty partition still reports the step's counts
                    take(apply([]))
                source.unlink()
                (path,) = out.close()  # staged data is one object (multipart on S3)
                finish = getattr(apply, "finish", None)
                if finish is not None:
                    final = finish(lambda: iter_staged_rows(path, batch_rows=batch_rows))
                    if final.rows:
                        raise RuntimeError(f"{self.name}: finish() returned rows; write rows per batch")
                    take(final)
            written = upload(store, part.staging(config, f"{self.output}.parquet"), path)
            upload(store, part.staging(config, f"rejected.{self.name}.jsonl"), rejections.path)
        for name, body in files.items():
            store.put(part.staging(config, name), body)
        result = StepResult(step=self.name, key=written, rows_in=progress.records, kept=kept, rejected=rejected,
                            counts=counts, extra=extra, seconds=round(time.perf_counter() - started, 3))
        put_json(store, part.staging(config, f"{self.name}.json"), result.to_dict())
        release_input(store, key=key, staging=part.staging(config, ""))
        progress.done()
        log.info("%s %s: in=%d kept=%d rejected=%d", self.name, part.label, progress.records, kept, rejected)
        return result


def step(name: str, *, output: str | None = None, read: Reader = iter_staged_rows):
    """Make a chain ``Step`` named ``name`` from its ``prepare`` function."""
    return lambda prepare: Step(name=name, prepare=prepare, output=output or name, read=read)
