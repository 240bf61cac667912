"""The weekly ingestion flow: one partition (domain, data interval) through every stage.

Each step is one Airflow task: it reads the key the previous step returned, writes its output to the
staging area of the partition's run and returns a small frozen result (``key`` of what it wrote, and
counts). The DAG passes that key from task to task; ``process_partition`` runs the same chain in
this process (re-publication, CLI, tests).

Stages, in order (governance runs before dedup, so the index hashes cleaned, masked text)::

    ingest_landing -> standardize_records -> clean_text -> mask_pii -> filter_sensitive
        -> find_duplicates -> auto_label -> validate_batch -> publish_partition -> republish_displaced

A week larger than ``ingest.shard_records`` runs the per-record work of every step in shards (any
worker): only decisions over the whole partition (PII numbering, dedup, the review queue, validation's
verdict) and the publication run once per partition (``shards``, ``parts``).

Modules: ``layout`` (where a partition's data lives), ``results`` (what steps hand on), ``steps`` (the
chain and its read-apply-write helper), ``publish`` (version + commit), ``displace`` (what a backfill
displaced), ``shrink`` (a week whose inputs lost files), ``shardplan`` / ``shards`` / ``parts`` (a week larger than
``ingest.shard_records`` in shards on any worker), ``flow`` (whole flows and run bookkeeping).
"""

from pipelines.weekly.flow import (
    clean_run_staging, collect_results, process_partition, record_result, republish_displaced, run_shards,
)
from pipelines.weekly.labels import finish_labels, label_shard
from pipelines.weekly.layout import PartitionRef, list_interval_files, run_results_prefix
from pipelines.weekly.publish import PIPELINE_VERSION, publish_partition
from pipelines.weekly.results import FeedbackRouted, IngestResult, PublishResult, StepResult, ValidationResult
from pipelines.weekly.shards import (
    ShardTask, clean_shard, decide_shards, finish_shard, gather_shards, govern_shard, number_pii, plan_run_shards,
    plan_shards,
)
from pipelines.weekly.shrink import InputsRemoved
from pipelines.weekly.steps import (
    CHAIN, GOVERNANCE, ValidationFailed, auto_label, clean_text, filter_sensitive, find_duplicates, finish_ingest,
    ingest_files, ingest_landing, mask_pii, plan_ingest, route_feedback, standardize_records, validate_batch,
)

__all__ = [
    "CHAIN", "GOVERNANCE", "PIPELINE_VERSION", "FeedbackRouted", "IngestResult", "InputsRemoved",
    "PartitionRef", "PublishResult", "ShardTask", "StepResult", "ValidationFailed", "ValidationResult", "auto_label",
    "clean_run_staging", "clean_shard", "clean_text", "collect_results", "decide_shards", "finish_labels",
    "finish_ingest", "finish_shard", "ingest_files", "plan_ingest",
    "filter_sensitive", "find_duplicates", "gather_shards", "govern_shard", "ingest_landing", "label_shard", "list_interval_files",
    "mask_pii", "number_pii", "plan_run_shards", "plan_shards", "process_partition",
    "publish_partition", "record_result", "republish_displaced", "route_feedback", "run_results_prefix",
    "run_shards", "standardize_records", "validate_batch",
]
