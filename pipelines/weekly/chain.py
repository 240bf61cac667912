"""The read-apply-write helper of the chain steps (``Step``), streaming in bounded memory.

A step reads the staged rows at ``key`` one batch (``ingest.batch_rows`` records) at a time, applies its
logic to each batch and appends what it kept to its output Parquet and what it rejected to its
rejections, both local files uploaded at the end (``pipelines.weekly.batches``). Counts of the batches
are summed. Logic that needs the whole partition keeps only what it needs (the PII token map, the
labeller's (id, confidence) pairs) and hands its partition-wide result back through ``finish``.

Steps that one task runs one after another run in one pass (``run_steps``): each batch goes through all of
them before it is written, so the rows in between are never written and read back (at 7.5 KB a record,
a Parquet write and read cost about as much as cleaning them); each step still stages its rejections and
its report.
"""

from __future__ import annotations

import contextlib
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
        return run_steps((self,), config=config, store=store, part=part, key=key)


@dataclass
class _Running:
    """One step of a ``run_steps`` pass: its logic and what its batches added up to so far."""

    step: Step
    apply: Apply
    rejections: JsonlFile
    rows_in: int = 0
    kept: int = 0
    rejected: int = 0
    seconds: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def take(self, applied: Applied) -> None:
        self.rejections.write(r.to_dict() for r in applied.rejections)
        self.kept += len(applied.rows)
        self.rejected += len(applied.rejections)
        merge_counts(self.counts, applied.counts)
        self.extra.update(applied.extra)
        self.files.update(applied.files)

    def run(self, rows: Sequence[dict]) -> Sequence[dict]:
        started = time.perf_counter()
        applied = self.apply(rows if isinstance(rows, list) else list(rows))  # a list, as when it runs alone
        self.rows_in += len(rows)
        self.take(applied)
        self.seconds += time.perf_counter() - started
        return applied.rows


def run_steps(steps: Sequence[Step], *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
              observe: Callable[[Sequence[dict]], None] | None = None) -> StepResult:
    """Stream the rows at ``key`` through ``steps`` in one pass: each batch goes through every step in
    order, only the last step's rows are written (``<output>.parquet`` of the last step). Every step still
    stages its rejections and its report (its ``key``: where it alone would have written), as if each had
    run on its own: the same rows, rejections and counts, without writing and reading back the rows in between.
    ``observe`` sees every batch of the last step's rows (in order) before they are written.

    Returns the last step's report. Only the last step may have a ``finish``.
    """
    started = time.perf_counter()
    batch_rows = config.ingest.batch_rows
    applies = [s.prepare(config, store, part) for s in steps]
    for s, apply in zip(steps[:-1], applies[:-1]):
        if getattr(apply, "finish", None) is not None:
            raise ValueError(f"{s.name} has a finish(): it can only be the last of the steps run in one pass")
    name = "+".join(s.name for s in steps)
    progress = Progress(name, part.label)
    with work_folder(steps[-1].name) as folder, contextlib.ExitStack() as files:
        running = [_Running(step=s, apply=a,
                            rejections=files.enter_context(JsonlFile(folder / f"rejected.{s.name}.jsonl")))
                   for s, a in zip(steps, applies)]
        last = running[-1]
        source = download(store, key, folder)
        with ParquetParts(folder / "out", batch_rows=batch_rows) as out:

            def through(rows: Sequence[dict]) -> None:
                for r in running:
                    rows = r.run(rows)
                if observe is not None:
                    observe(rows)
                out.write(rows)

            seen = False
            for batch in steps[0].read(source, batch_rows=batch_rows):
                seen = True
                through(batch)
                progress.add(len(batch))
            if not seen:  # an empty partition still reports every step's counts
                through([])
            source.unlink()
            (path,) = out.close()  # staged data is one object (multipart on S3)
            finish = getattr(last.apply, "finish", None)
            if finish is not None:
                final = finish(lambda: iter_staged_rows(path, batch_rows=batch_rows))
                if final.rows:
                    raise RuntimeError(f"{last.step.name}: finish() returned rows; write rows per batch")
                last.take(final)
        written = upload(store, part.staging(config, f"{last.step.output}.parquet"), path)
        for r in running:
            r.rejections.close()
            upload(store, part.staging(config, f"rejected.{r.step.name}.jsonl"), r.rejections.path)
    io_seconds = time.perf_counter() - started - sum(r.seconds for r in running)
    results = []
    for r in running:  # the reports last (the last step's last of all): a task retried before them runs again
        for file_name, body in r.files.items():
            store.put(part.staging(config, file_name), body)
        results.append(StepResult(
            step=r.step.name, key=written if r is last else part.staging(config, f"{r.step.output}.parquet"),
            rows_in=r.rows_in, kept=r.kept, rejected=r.rejected, counts=r.counts, extra=r.extra,
            seconds=round(r.seconds + (io_seconds if r is last else 0.0), 3)))
    for result in results:
        put_json(store, part.staging(config, f"{result.step}.json"), result.to_dict())
    release_input(store, key=key, staging=part.staging(config, ""))
    progress.done()
    for r in running:
        log.info("%s %s: in=%d kept=%d rejected=%d", r.step.name, part.label, r.rows_in, r.kept, r.rejected)
    return results[-1]


def step(name: str, *, output: str | None = None, read: Reader = iter_staged_rows):
    """Make a chain ``Step`` named ``name`` from its ``prepare`` function."""
    return lambda prepare: Step(name=name, prepare=prepare, output=output or name, read=read)
