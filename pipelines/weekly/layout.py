"""Where a partition's data lives: landing files of its interval, its run's staging area, its curated
and quarantine prefixes, and its domain's dedup index.

Staging (per run; deleted when the partition is published or found unchanged, by ``process_partition``
whatever the outcome, and by the DAG run's last task: it holds raw, unmasked text)::

    <staging>/<domain>/<interval>/<run_key>/raw.jsonl          ingest_landing
    <staging>/<domain>/<interval>/<run_key>/<output>.parquet    each step of the chain, in order
    <staging>/<domain>/<interval>/<run_key>/<step>.json          each step's report (counts)
    <staging>/<domain>/<interval>/<run_key>/rejected.<step>.jsonl  what the step quarantined
    <staging>/<domain>/<interval>/<run_key>/shard-<k>/...       a sharded week: each shard's own steps, the same
                                                                names (pipelines.weekly.shards), gathered before dedup
    <staging>/_runs/<interval>/<run_key>/<domain>.json         the run's publish results (flow.record_result)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.config import PipelineConfig
from pipelines.dedup.index import HashIndex
from pipelines.partition import Interval, arrival_date_of
from pipelines.publish import partition_prefix
from pipelines.storage import ObjectInfo, ObjectStore


@dataclass(frozen=True)
class PartitionRef:
    """One domain's data interval, processed under one run key (staging is per run).

    ``shard``: one shard of a sharded week (``pipelines.weekly.shards``); its steps stage under
    ``shard-<k>/`` of the run's staging. ``None``: the whole partition.
    """

    domain: str
    interval: Interval
    run_key: str = "manual"
    shard: int | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", self.run_key):
            raise ValueError(f"run_key {self.run_key!r}: use letters, digits, '.', '_' or '-'")

    @classmethod
    def for_run(cls, *, domain: str, interval: Interval, run_id: str) -> PartitionRef:
        return cls(domain=domain, interval=interval, run_key=re.sub(r"[^A-Za-z0-9._-]+", "-", run_id)[:200])

    def staging(self, config: PipelineConfig, name: str) -> str:
        where = "" if self.shard is None else f"shard-{self.shard:05d}/"
        return f"{config.storage.staging_prefix}/{self.domain}/{self.interval.name}/{self.run_key}/{where}{name}"

    def shard_ref(self, shard: int | None) -> PartitionRef:
        """Shard ``shard`` of this partition (``None``: the whole partition)."""
        return PartitionRef(domain=self.domain, interval=self.interval, run_key=self.run_key, shard=shard)

    @property
    def label(self) -> str:
        """``legal 2026-10-04_2026-10-11`` (``... shard 3`` for a shard): where a log line comes from."""
        return f"{self.domain} {self.interval.name}" + ("" if self.shard is None else f" shard {self.shard}")

    def curated(self, config: PipelineConfig) -> str:
        return partition_prefix(config.storage.curated_prefix, self.domain, self.interval.name)

    def quarantine(self, config: PipelineConfig) -> str:
        return f"{config.storage.quarantine_prefix}/{self.domain}/{self.interval.name}"


def list_interval_files(store: ObjectStore, *, prefix: str, interval: Interval) -> list[ObjectInfo]:
    """Files under ``<prefix>/<YYYY-MM-DD>/`` for each arrival date of the interval (one LIST per day)."""
    files = []
    for day in interval.dates():
        files.extend(o for o in store.list(f"{prefix}/{day.isoformat()}/") if not o.key.endswith("/"))
    return files


def find_misplaced(store: ObjectStore, *, prefix: str) -> list[str]:
    """Keys under ``<prefix>/`` that no interval will ever read: not inside a ``<YYYY-MM-DD>/`` folder
    (``<prefix>/2026-11-3/a.jsonl``, ``<prefix>/a.jsonl``).

    One listing of the source's landing prefix (every arrival date of it): ingestion reports these
    files (a warning and a count) instead of ignoring them without a word.
    """
    base = prefix.rstrip("/") + "/"
    return [o.key for o in store.list(base) if not o.key.endswith("/")
            and ("/" not in o.key[len(base):] or arrival_date_of(o.key, base) is None)]


def clean_staging(config: PipelineConfig, store: ObjectStore, part: PartitionRef) -> int:
    """Delete the run's staging area of one partition (raw, unmasked text among it); returns objects deleted."""
    deleted = 0
    for obj in list(store.list(part.staging(config, ""))):
        store.delete(obj.key)
        deleted += 1
    return deleted


def hash_index(config: PipelineConfig, store: ObjectStore, domain: str) -> HashIndex:
    """The domain's persistent dedup index (read by find_duplicates, added to by publish_partition)."""
    return HashIndex(store=store, prefix=f"{config.storage.index_prefix}/{domain}",
                     buckets=config.dedup.buckets, compact_after=config.dedup.compact_after)


def run_results_prefix(config: PipelineConfig, interval: Interval, run_key: str) -> str:
    return f"{config.storage.staging_prefix}/_runs/{interval.name}/{run_key}/"
