"""Whole flows over the steps: one partition in this process, re-publication of displaced partitions,
and the run's bookkeeping (each domain's publish result, read by the run's last task)."""

from __future__ import annotations

import logging
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.partition import Interval
from pipelines.serialize import get_json, put_json
from pipelines.storage import ObjectStore
from pipelines.weekly.labels import label_shard
from pipelines.weekly.layout import PartitionRef, clean_staging, run_results_prefix
from pipelines.weekly.publish import publish_partition
from pipelines.weekly.results import PublishResult
from pipelines.weekly.shards import (
    clean_shard, gather_shards, govern_shard, number_pii, partition_steps, plan_shards,
)
from pipelines.weekly.steps import find_duplicates, ingest_landing, validate_batch

log = logging.getLogger("pipelines.weekly")


def process_partition(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef,
                      who: str = "pipeline", accept_removed: bool = False) -> dict[str, Any]:
    """Run every step of one partition in this process (re-publication, CLI, tests); a week larger than
    ``ingest.shard_records`` runs its shards one after another (``run_shards``).

    The run's staging area is deleted whatever the outcome (it holds raw, unmasked text; a failed
    validation keeps its report in the partition's quarantine). ``accept_removed``: see
    ``publish_partition``.

    Returns the publish result as a dict, with the ingest and dedup timings under ``stages``.
    """
    try:
        ingest = ingest_landing(config=config, store=store, part=part)
        key, seconds = run_shards(config=config, store=store, part=part), {}
        for step in partition_steps():
            result = step(config=config, store=store, part=part, key=key)
            key, seconds[step.name] = result.key, result.seconds
        validated = validate_batch(config=config, store=store, part=part, key=key)
        published = publish_partition(config=config, store=store, part=part, key=validated.key, who=who,
                                      accept_removed=accept_removed)
    finally:
        clean_staging(config, store, part)
    return {**published.to_dict(),
            "stages": {"ingest_seconds": ingest.seconds, "dedup_seconds": seconds[find_duplicates.name]}}


def run_shards(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> str:
    """The per-record steps of an ingested partition, shard by shard in this process, as the DAG's
    clean_shard / number_pii / govern_shard / label_shard / gather_shards tasks run them (a week of one
    shard: the chain on the partition). Returns the key of the partition's filtered rows."""
    tasks = plan_shards(config=config, store=store, part=part)
    cleaned = [clean_shard(config=config, store=store, part=t.part(part), key=t.key) for t in tasks]
    number_pii(config=config, store=store, part=part, shards=len(tasks))
    for task, key in zip(tasks, cleaned):
        governed = govern_shard(config=config, store=store, part=task.part(part), key=key)
        label_shard(config=config, store=store, part=task.part(part), key=governed)
    return gather_shards(config=config, store=store, part=part)["key"]


def republish_displaced(*, config: PipelineConfig, store: ObjectStore, targets: list[dict], run_key: str,
                        max_rounds: int = 5) -> list[dict]:
    """Re-publish the partitions a run displaced, until nothing more changes."""
    done: list[dict] = []
    pending = {(t["domain"], t["interval"]): t for t in targets}
    for _round in range(max_rounds):
        if not pending:
            return done
        next_pending: dict = {}
        for (domain, name), target in sorted(pending.items()):
            part = PartitionRef.for_run(domain=domain, interval=Interval.parse(name), run_id=f"{run_key}-republish")
            log.info("re-publishing %s %s: %s", domain, name, target.get("why"))
            result = process_partition(config=config, store=store, part=part, who=f"republish:{run_key}")
            done.append({"domain": domain, "interval": name, "why": target.get("why"),
                         "published": result["published"], "version": result.get("version")})
            for t in result.get("republish", []):
                if (t["domain"], t["interval"]) != (domain, name) or t.get("why", "").startswith("an earlier"):
                    next_pending[(t["domain"], t["interval"])] = t
        pending = next_pending
    raise RuntimeError(f"re-publication did not settle after {max_rounds} rounds: {sorted(pending)}")


def record_result(config: PipelineConfig, store: ObjectStore, part: PartitionRef, result: PublishResult) -> None:
    """Keep a partition's publish result for the run's last step (outside the partition's staging)."""
    put_json(store, f"{run_results_prefix(config, part.interval, part.run_key)}{part.domain}.json", result.to_dict())


def collect_results(config: PipelineConfig, store: ObjectStore, interval: Interval, run_key: str) -> dict[str, dict]:
    """The publish results a run recorded, by domain (a failed domain has none)."""
    prefix = run_results_prefix(config, interval, run_key)
    return {o.key[len(prefix):-5]: get_json(store, o.key) for o in store.list(prefix) if o.key.endswith(".json")}


def clean_run_staging(config: PipelineConfig, store: ObjectStore, interval: Interval, run_key: str,
                      domains: list[str]) -> int:
    """Delete what a run staged for every domain, and its recorded results, whatever each domain's outcome
    (the run's last task: staging holds raw, unmasked text and must not outlive the run)."""
    deleted = sum(clean_staging(config, store, PartitionRef(domain=d, interval=interval, run_key=run_key))
                  for d in domains)
    for obj in list(store.list(run_results_prefix(config, interval, run_key))):
        store.delete(obj.key)
        deleted += 1
    return deleted
