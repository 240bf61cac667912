"""A week larger than ``ingest.shard_records``, processed as shards that run as tasks on any worker.

``ingest_landing`` cuts the week's records into shards (by landing file, then by row range:
``pipelines.weekly.shardplan``), each a contiguous range of the week in arrival order. The per-record
steps run per shard, in each shard's own staging (``shard-<k>/``, the same ``Step`` code as the whole
partition); what is decided over the whole partition is decided once, over every shard:

1. ``clean_shard`` (per shard): the chain's steps before mask_pii (standardize_records, clean_text), in one
   pass (``chain.run_steps``: the rows between the steps are not written), and the shard's distinct
   personal-data values in order of first appearance (``pii_values.jsonl``), found on the rows as they are written.
2. ``number_pii`` (per partition): PII tokens are numbered by first appearance over the whole partition
   (``[PHONE_1]``...), so the shards' value lists, in shard order, give every value its partition-wide
   number (``pii_tokens.jsonl`` per shard). Its memory is the token map, one entry per distinct value.
3. ``govern_shard`` (per shard): mask_pii with the partition's numbering, then the chain's other steps
   before find_duplicates (filter_sensitive, and any governance step added to ``steps.GOVERNANCE``), in
   one pass; the content hash and arrival day of each row it keeps are computed as the rows are written
   (``<key>.sha256``, 40 bytes a row), so that find_duplicates does not hash the partition's texts again
   on one worker.
4. ``decide_shards`` (per partition; the DAG's ``find_duplicates``): ``gather_shards`` puts the shards'
   rejections and reports together, in shard order, under the names an unsharded run stages
   (``rejected.<step>.jsonl``, ``<step>.json``); the rows are not rewritten (``pipelines.weekly.parts``).
   Then the dedup decision over every shard, in arrival order, on their staged hashes
   (``decide_duplicates``).
5. ``finish_shard`` (per shard): the decision applied to the shard's rows (``apply_duplicates``), its
   labels (``label_part``: label_shard's predictions, reviews win), the suite on its rows
   (``validate_part``).
6. Per partition: ``finish_labels`` draws the review queue over every shard's predictions,
   ``validate_batch`` makes the shards' suite reports one verdict (with uniqueness over the partition),
   ``publish_partition`` reads the shards' rows in order and commits once.

``ParquetParts`` makes the bytes of what publication writes a function of the row sequence, so a sharded
week publishes the same partition as an unsharded run.

A week of one shard runs the same functions on the partition's own staging: step 2 and gathering
have nothing to do, and mask_pii numbers tokens as it streams (today's chain, in fewer tasks).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.governance import domain_rules
from pipelines.pii import PiiMapping, mask_records
from pipelines.serialize import get_json, put_json
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.batches import (
    JsonlFile, Progress, download, iter_jsonl_batches, iter_staged_rows, log, upload, work_folder,
)
from pipelines.weekly.chain import Step, merge_counts, run_steps
from pipelines.weekly.dedup_step import (
    HASHES_SUFFIX, RowHasher, apply_duplicates, decide_duplicates, put_hashes, stage_hashes,
)
from pipelines.weekly.labels import label_part
from pipelines.weekly.parts import name_parts, staged_parts
from pipelines.weekly.layout import PartitionRef
from pipelines.weekly.results import StepResult
from pipelines.weekly.shardplan import PII_TOKENS, PII_VALUES
from pipelines.weekly import steps

def shard_steps() -> tuple[Step, ...]:
    """The per-record steps of ``steps.CHAIN``, in order: every step before find_duplicates (read when
    called, so that a governance step added to the chain runs per shard too)."""
    return steps.CHAIN[:steps.CHAIN.index(steps.find_duplicates)]


def partition_steps() -> tuple[Step, ...]:
    """The steps that decide over the whole partition, from find_duplicates on."""
    return steps.CHAIN[steps.CHAIN.index(steps.find_duplicates):]


def _split_at_numbering() -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The per-record steps before mask_pii (``clean_shard``) and from it on (``govern_shard``)."""
    per_shard = shard_steps()
    at = per_shard.index(steps.mask_pii)
    return per_shard[:at], per_shard[at:]


@dataclass(frozen=True)
class ShardTask:
    """One shard handed from task to task: its partition, its number (``None``: the whole partition, a
    week of one shard), how many the week has, and the key of its input."""

    domain: str
    shard: int | None
    shards: int
    key: str

    def part(self, partition: PartitionRef) -> PartitionRef:
        return partition.shard_ref(self.shard)

    @property
    def label(self) -> str:
        """``legal 3/8`` (``legal`` for a week of one shard): the task's label in the Airflow UI."""
        return self.domain if self.shard is None else f"{self.domain} {self.shard + 1}/{self.shards}"

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "shard": self.shard, "shards": self.shards, "key": self.key}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ShardTask:
        return cls(domain=value["domain"], shard=value["shard"], shards=value["shards"], key=value["key"])


def plan_shards(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef,
                cleaned: bool = False) -> list[ShardTask]:
    """The shards ``ingest_landing`` wrote for the partition (read from its staged report), each with the
    key of its raw records, or (``cleaned``) of what its ``clean_shard`` wrote.

    Raises:
        NotFound: the partition was not ingested, or a shard has no ``clean_shard`` output (its task failed).
    """
    ingest = get_json(store, part.staging(config, "ingest.json"))
    keys = ingest.get("shards") or [ingest["key"]]
    shards = [None] if len(keys) == 1 else list(range(len(keys)))
    if cleaned:
        last = _split_at_numbering()[0][-1]
        keys = [get_json(store, part.shard_ref(k).staging(config, f"{last.name}.json"))["key"] for k in shards]
    return [ShardTask(domain=part.domain, shard=k, shards=len(keys), key=key) for k, key in zip(shards, keys)]


def plan_run_shards(*, config: PipelineConfig, store: ObjectStore, parts: list[PartitionRef],
                    cleaned: bool = False) -> list[ShardTask]:
    """Every partition's shards in one list (the DAG maps each per-shard task once, over all domains).

    A partition that was not ingested, or whose shards did not all pass ``clean_shard``, is left out with a
    warning: one domain's failure never stops another's shards; its own ``gather_shards`` fails and says why.
    """
    tasks: list[ShardTask] = []
    for part in parts:
        try:
            tasks.extend(plan_shards(config=config, store=store, part=part, cleaned=cleaned))
        except NotFound as exc:
            log.warning("%s: left out of this stage (%s missing: its task failed); it will not be published",
                        part.label, exc)
    return tasks


def _run_or_resume(group: Sequence[Step], *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                   observe: Callable[[Sequence[dict]], None] | None = None) -> tuple[str, bool]:
    """Run the steps of ``group`` on ``key`` in one pass (``run_steps``); a task retried after they succeeded
    goes on from their output. They delete their input last, so an input still there (or staged again by a
    new ingest) is always run. Returns the key of the last step's rows, and whether the steps ran (``observe``
    saw their rows) or were resumed."""
    report = part.staging(config, f"{group[-1].name}.json")
    if not store.exists(key) and store.exists(report):
        done = get_json(store, report)
        if store.exists(done["key"]):
            log.info("%s %s: already done in this run, resuming after it", "+".join(s.name for s in group), part.label)
            return done["key"], False
    return run_steps(group, config=config, store=store, part=part, key=key, observe=observe).key, True


def clean_shard(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> str:
    """The steps before mask_pii on one shard (or the whole partition), in one pass; for a shard of a sharded
    week, also stage its distinct personal-data values in order of first appearance (``number_pii``'s
    input), found on the rows as they are written. Returns the key of the cleaned rows."""
    if part.shard is None:
        return _run_or_resume(_split_at_numbering()[0], config=config, store=store, part=part, key=key)[0]
    rules = domain_rules(config, part.domain)
    mapping = PiiMapping()

    def observe(rows: Sequence[dict]) -> None:  # what it finds, in order; the masked rows are dropped
        mask_records(rows, config=rules.pii, mapping=mapping)

    key, ran = _run_or_resume(_split_at_numbering()[0], config=config, store=store, part=part, key=key, observe=observe)
    if not ran:
        mapping = _find_pii_values(config, store, part, key)
    with work_folder("pii-values") as folder:
        with JsonlFile(folder / PII_VALUES) as out:
            out.write({"kind": kind, "value": value} for kind, value in mapping.values())
        upload(store, part.staging(config, PII_VALUES), out.path)
    return key


def _find_pii_values(config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> PiiMapping:
    """The personal-data values of the staged rows at ``key``, in order of first appearance (a retried
    ``clean_shard`` whose steps had finished reads them back)."""
    rules = domain_rules(config, part.domain)
    mapping = PiiMapping()
    progress = Progress("pii_values", part.label)
    with work_folder("pii-values") as folder:
        source = download(store, key, folder)
        for batch in iter_staged_rows(source, batch_rows=config.ingest.batch_rows):
            mask_records(batch, config=rules.pii, mapping=mapping)
            progress.add(len(batch))
        source.unlink()
    progress.done()
    return mapping


def number_pii(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, shards: int) -> dict[str, int]:
    """Number every personal-data value of a sharded partition by its first appearance over the
    partition (the shards' value lists, in shard order), and stage each shard's tokens.

    Returns the distinct values per kind (counts only). A week of one shard has nothing to number."""
    if shards <= 1:
        return {}
    numbers: dict[tuple[str, str], int] = {}
    last: dict[str, int] = {}
    for k in range(shards):
        shard = part.shard_ref(k)
        with work_folder("number-pii") as folder:
            path = download(store, shard.staging(config, PII_VALUES), folder)
            with JsonlFile(folder / PII_TOKENS) as out:
                for batch in iter_jsonl_batches(path, batch_rows=config.ingest.batch_rows):
                    for item in batch:
                        name = (item["kind"], item["value"])
                        n = numbers.get(name)
                        if n is None:
                            n = numbers[name] = last[item["kind"]] = last.get(item["kind"], 0) + 1
                        out.write(({"kind": name[0], "value": name[1], "n": n},))
            upload(store, shard.staging(config, PII_TOKENS), out.path)
        store.delete(shard.staging(config, PII_VALUES))
    log.info("number_pii %s: %d distinct values over %d shards %s", part.label, len(numbers), shards, last)
    return dict(sorted(last.items()))


def govern_shard(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> str:
    """mask_pii (with the partition's numbering, for a shard) and the steps after it, up to find_duplicates,
    on one shard (or the whole partition), in one pass; then the content hashes of the rows it kept, staged
    beside them (``put_hashes``: find_duplicates' first pass, done here in parallel, on the rows as they are
    written). Returns the key of the last step's rows."""
    hasher = RowHasher()
    key, ran = _run_or_resume(_split_at_numbering()[1], config=config, store=store, part=part, key=key,
                              observe=hasher.add)
    if ran:
        put_hashes(store, key, *hasher.result())
        return key
    progress = Progress("hash", part.label)  # a retried task whose steps had finished: hash what they wrote
    with work_folder("hash") as folder:
        progress.add(stage_hashes(store, key, download(store, key, folder), batch_rows=config.ingest.batch_rows))
    progress.done()
    return key


def gather_shards(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> dict[str, Any]:
    """Put a sharded partition's shards together, in shard order, under the names an unsharded run
    stages: ``filtered.parquet`` (rows regrouped as one run writes them), ``rejected.<step>.jsonl`` and
    each step's report (counts summed as batches' are); then delete the shards' staging.

    Returns the partition's filter_sensitive report (its ``key``: the next step's input); for a week of
    one shard, the report it already has.

    Raises:
        RuntimeError: a shard has no filter_sensitive report (its task failed: see its log).
    """
    per_shard = shard_steps()
    last = per_shard[-1]
    ingest = get_json(store, part.staging(config, "ingest.json"))
    count = len(ingest.get("shards") or [])
    if not count:
        return get_json(store, part.staging(config, f"{last.name}.json"))
    parts = [part.shard_ref(k) for k in range(count)]
    missing = [p.shard for p in parts if not store.exists(p.staging(config, f"{last.name}.json"))]
    if missing:
        raise RuntimeError(f"{part.label}: shard(s) {missing} of {count} did not finish (see their clean_shard / "
                           "govern_shard logs); run the partition again from ingest_landing")
    progress = Progress("gather", part.label)
    with work_folder("gather") as folder:
        for step in per_shard:
            merged = _merge_reports(step, [get_json(store, p.staging(config, f"{step.name}.json")) for p in parts],
                                    key=part.staging(config, f"{step.output}.parquet"))
            rejected = folder / f"rejected.{step.name}.jsonl"  # its own file: an uploaded file is never rewritten
            with open(rejected, "wb") as out:
                for p in parts:
                    staged = download(store, p.staging(config, f"rejected.{step.name}.jsonl"), folder, "shard.jsonl")
                    with open(staged, "rb") as fh:
                        shutil.copyfileobj(fh, out)
                    staged.unlink()
            upload(store, part.staging(config, f"rejected.{step.name}.jsonl"), rejected)
            put_json(store, part.staging(config, f"{step.name}.json"), merged)
    # The rows stay where the shards wrote them: find_duplicates reads them in shard order, with their hashes.
    data = [p.staging(config, f"{last.output}.parquet") for p in parts]
    name_parts(store, merged["key"], data)
    keep = {*data, *(k + HASHES_SUFFIX for k in data)}
    for p in parts:  # the rest of the shards' staging: reports, rejections, PII tokens (raw values)
        for obj in list(store.list(p.staging(config, ""))):
            if obj.key not in keep:
                store.delete(obj.key)
    progress.add(merged["kept"])
    progress.done()
    return merged


def decide_shards(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> list[ShardTask]:
    """The partition-wide steps between the shard tasks: ``gather_shards``, then the dedup decision over
    every shard (``decide_duplicates``). Returns the shards for ``finish_shard``, each with the key of its
    governed rows (a week of one shard: the partition)."""
    gathered = gather_shards(config=config, store=store, part=part)
    decide_duplicates(config=config, store=store, part=part, key=gathered["key"])
    keys = staged_parts(store, gathered["key"])
    shards = [None] if keys == [gathered["key"]] else list(range(len(keys)))
    return [ShardTask(domain=part.domain, shard=k, shards=len(keys), key=key) for k, key in zip(shards, keys)]


def finish_shard(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> str:
    """The per-record work after the partition's dedup decision, on one shard (or the whole partition):
    ``apply_duplicates``, ``label_part`` and ``validate_part``. Returns the key of its labelled rows."""
    key = apply_duplicates(config=config, store=store, part=part, key=key)
    key = label_part(config=config, store=store, part=part, key=key)
    steps.validate_part(config=config, store=store, part=part, key=key)
    return key


def _merge_reports(step: Step, reports: list[dict[str, Any]], *, key: str) -> dict[str, Any]:
    """One step's report over the shards: counts added as ``Step`` adds its batches', the rest from the
    shards in order (the last value wins, as it does over batches)."""
    counts: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    standard = {"step", "key", "in", "kept", "rejected", "counts", "seconds"}
    for report in reports:
        merge_counts(counts, report["counts"])
        extra.update({k: v for k, v in report.items() if k not in standard})
    return StepResult(step=step.name, key=key, rows_in=sum(r["in"] for r in reports),
                      kept=sum(r["kept"] for r in reports), rejected=sum(r["rejected"] for r in reports),
                      counts=counts, extra=extra, seconds=round(sum(r["seconds"] for r in reports), 3)).to_dict()
