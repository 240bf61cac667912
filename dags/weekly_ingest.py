"""weekly_ingest: landing files and feedback of one week -> curated, deduplicated, validated partitions."""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import AssetAlias, dag, get_current_context, task, task_group
from airflow.timetables.interval import CronDataIntervalTimetable

from mlops_airflow import default_args, task_sla_alert, task_timeout

CURATED = AssetAlias("curated")
log = logging.getLogger(__name__)

DOC = """
### Weekly ingestion

For the run's **data interval** (arrival dates in the landing keys, never S3 LastModified), every
configured domain goes through the chain below. Each task writes its output to the run's staging area
(`staging/<domain>/<interval>/<run>/`) and returns the **key** of what it wrote with its counts; the
next task reads that key (the XCom arrow is the data dependency). Large data never goes through XCom.

| task | what it does | output (object store) |
|---|---|---|
| `route_feedback` | executes feedback release requests, quarantines feedback that names no configured domain | `quarantine/feedback/<interval>/` |
| `ingest_landing` | executes the partition's pending quarantine release requests (the console's, `review/releases/`), then lists `landing/<domain>/<date>/` and `landing/feedback/<date>/`; groups the files (`ingest.shard_bytes` each) | staging `ingest-plan.json` |
| `ingest_files` | per group of landing files: parses JSONL/CSV/Parquet, UTF-8/GB18030; cuts the records into shards of at most `ingest.shard_records` (by landing file, then row range) | staging `raw.jsonl` (a sharded week: one per shard) |
| `plan_shards` | each domain's ingest report from its groups; every domain's shards, one list: the next tasks are mapped over it (label `legal 3/8`) | XCom |
| `clean_shard` | per shard: `standardize_records` (curated JSON Schema; failures quarantined with the rule), then `clean_text` (HTML/control characters, per-domain regex rules, length and language filters); a shard also lists its personal-data values | staging `cleaned.parquet` |
| `number_pii` | numbers each sharded partition's PII tokens by first appearance over all its shards | staging `pii_tokens.jsonl` per shard |
| `govern_shard` | per shard: `mask_pii` (phones, emails, ID/bank card numbers, addresses; same value, same token per partition), then `filter_sensitive` (lexicon, Aho-Corasick; per-domain policy drop / mask / flag) | staging `filtered.parquet` |
| `label_shard` | per shard, queue `gpu`: the labeller's batched forward passes over the records without a label (a GPU worker's GPU, else the CPU, INT8 when its check passed; `governance.label.device`) | staging `label-predictions/<shard>.parquet` |
| `find_duplicates` | per domain: puts the shards' reports and rejections together (`gather_shards`), then decides dedup over the whole partition, in arrival order, on the SHA-256 of NFKC + whitespace-folded text (staged by `govern_shard`, 40 bytes a record) against the persistent index, and the id conflicts | staging `dedup.json`, each shard's `dedup-decision.json` |
| `finish_shard` | per shard: drops the decided duplicates and id conflicts; labels unlabelled records with the domain's BERT-style labeller (label_shard's predictions, by text digest; imported reviews win); runs the Great Expectations suite `expectations/curated_batch.json` on its rows | staging `labelled.parquet` per shard |
| `auto_label` | per domain: draws the review queue over the whole partition's predictions (>= 15% plus every low-confidence one) | staging `review_queue.jsonl` |
| `validate_batch` | per domain: the shards' suite reports as one, uniqueness of `id` / `content_sha256` over the partition, `validation.min_records`; a failure blocks publication and alerts | staging `validation.json` |
| `publish_partition` | writes `curated/<domain>/<interval>/v-<version>/` then the commit record (last); emits Asset `curated_<domain>` | curated |
| `republish_displaced` | a backfilled earlier week re-publishes later weeks that kept its records, as new versions | curated |

The per-record work of every step runs in the shard tasks; what is decided over the whole partition
(PII numbering, dedup, the review queue, validation's verdict) and the publication run once per domain:
a sharded week publishes the same bytes as an unsharded run (docs/INGESTION.md, "Sharded weeks").
Every task is killed after `ops.task_timeout_minutes` (`execution_timeout`), so a hung task fails and alerts.
**Reruns** are safe: unchanged inputs give the same version and no new commit.
**Backfill**: `airflow backfill create --dag-id weekly_ingest --from-date 2026-10-04 --to-date 2026-10-25`.
Any order of weeks ends in the same state as running them in order.
Inspect a partition: `python -m pipelines show --domain legal --interval 2026-10-04_2026-10-11`.
"""


def _partition(domain: str):
    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef

    from mlops_airflow import task_store

    context = get_current_context()
    context["domain"] = domain  # shown as the map index label in the UI
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None:
        raise ValueError("this run has no data interval: trigger it with an explicit logical date")
    config = load_config()
    part = PartitionRef.for_run(domain=domain, interval=Interval.from_datetimes(start, end), run_id=context["run_id"])
    return config, task_store(config, identity="ingestion"), part


def _shards(domains: list[str], *, cleaned: bool = False) -> list[dict]:
    """Every domain's shards, with the key of their raw records or (``cleaned``) of their clean_shard output
    (read from the run's staging, not XCom: a domain whose task failed is left out, the others go on)."""
    from pipelines.config import load_config
    from pipelines.partition import Interval
    from pipelines.weekly import PartitionRef, plan_run_shards

    from mlops_airflow import task_store

    context = get_current_context()
    interval = Interval.from_datetimes(context["data_interval_start"], context["data_interval_end"])
    config = load_config()
    parts = [PartitionRef.for_run(domain=d, interval=interval, run_id=context["run_id"]) for d in domains]
    tasks = plan_run_shards(config=config, store=task_store(config, identity="ingestion"), parts=parts,
                            cleaned=cleaned)
    return [t.to_dict() for t in tasks]


def _run_step(step, previous: dict) -> dict:
    """Run a step of the chain on the key the previous task wrote; hand on what this one wrote."""
    config, store, part = _partition(previous["domain"])
    return {"domain": part.domain, **step(config=config, store=store, part=part, key=previous["key"]).to_dict()}


@dag(
    dag_id="weekly_ingest",
    # Data intervals [Sunday, next Sunday): Airflow 3 maps "@weekly" to a trigger timetable whose runs
    # have no interval, so the data-interval timetable is explicit.
    schedule=CronDataIntervalTimetable("0 0 * * 0", timezone="UTC"),
    start_date=dt.datetime(2026, 10, 4, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    tags=["ingestion", "governance", "weekly"],
    doc_md=DOC,
    default_args=default_args(
        owner="data-platform",
        retry_exponential_backoff=True,
        # SLA-style (Airflow 3 has no SLAs): alert when a task or the run took longer than `ops:` allows,
        # and kill a hung task so that it fails and alerts instead of running forever.
        on_success_callback=task_sla_alert,
        execution_timeout=task_timeout("weekly_ingest"),
    ),
)
def weekly_ingest():
    @task
    def list_domains() -> list[str]:
        from pipelines.config import load_config

        return sorted(load_config().domains)

    @task
    def route_feedback() -> dict:
        from pipelines.weekly import route_feedback as step

        config, store, part = _partition("feedback")
        return step(config=config, store=store, interval=part.interval, run_key=part.run_key).to_dict()

    @task(map_index_template="{{ domain }}")
    def ingest_landing(domain: str) -> dict:
        """Release requests, the listing of the week's landing files, their groups (one ingest_files each)."""
        from pipelines.weekly import plan_ingest

        config, store, part = _partition(domain)
        plan = plan_ingest(config=config, store=store, part=part)
        return {"domain": domain, "files": len(plan["files"]), "groups": len(plan["groups"]),
                "misplaced": plan["misplaced"], "releases": plan["releases"]}

    @task
    def plan_files(planned: list[dict]) -> list[dict]:
        """Every domain's groups of landing files, one list: ingest_files is mapped over it."""
        return [{"domain": p["domain"], "group": g, "groups": p["groups"]} for p in planned for g in range(p["groups"])]

    @task(map_index_template="{{ files_label }}")
    def ingest_files(files: dict) -> dict:
        """Parse one group of a domain's landing files into shards of raw records."""
        from pipelines.weekly import ingest_files as step

        config, store, part = _partition(files["domain"])
        get_current_context()["files_label"] = (files["domain"] if files["groups"] == 1 else
                                                f"{files['domain']} {files['group'] + 1}/{files['groups']}")
        report = step(config=config, store=store, part=part, group=files["group"])
        return {**files, "parsed": report["parsed"], "rejected": report["rejected"], "shards": len(report["shards"])}

    @task(trigger_rule="all_done")
    def plan_shards(domains: list[str]) -> list[dict]:
        """Each domain's ingest report from its groups; every domain's shards, one list: the per-shard tasks
        are mapped over it (Airflow maps a task once, not per domain). A domain whose ingest failed has none
        (logged here; its auto_label fails)."""
        from pipelines.weekly import finish_ingest

        for domain in domains:
            config, store, part = _partition(domain)
            try:
                finish_ingest(config=config, store=store, part=part)
            except Exception:  # one domain's failure is its own
                log.exception("plan_shards %s: not ingested; it will not be published", part.label)
        return _shards(domains)

    @task(map_index_template="{{ shard_label }}")
    def clean_shard(shard: dict) -> dict:
        from pipelines.weekly import ShardTask, clean_shard as step

        task, (config, store, part) = ShardTask.from_dict(shard), _partition(shard["domain"])
        get_current_context()["shard_label"] = task.label
        key = step(config=config, store=store, part=task.part(part), key=task.key)
        return {**task.to_dict(), "key": key}

    @task(trigger_rule="all_done")
    def number_pii(domains: list[str]) -> list[dict]:
        """Number each sharded domain's PII tokens over all its shards; hand on the shards to govern."""
        from pipelines.weekly import number_pii as step

        shards = _shards(domains, cleaned=True)
        for domain, count in {s["domain"]: s["shards"] for s in shards}.items():
            config, store, part = _partition(domain)
            step(config=config, store=store, part=part, shards=count)
        return shards

    @task(map_index_template="{{ shard_label }}")
    def govern_shard(shard: dict) -> dict:
        from pipelines.weekly import ShardTask, govern_shard as step

        task, (config, store, part) = ShardTask.from_dict(shard), _partition(shard["domain"])
        get_current_context()["shard_label"] = task.label
        return {**task.to_dict(), "key": step(config=config, store=store, part=task.part(part), key=task.key)}

    @task(queue="gpu", map_index_template="{{ shard_label }}")
    def label_shard(shard: dict) -> dict:
        """The labeller's forward passes for one shard, batched, on the ``gpu`` queue (a GPU worker under
        CeleryExecutor; the CPU elsewhere); auto_label takes the predictions by text digest."""
        from pipelines.weekly import ShardTask, label_shard as step

        task, (config, store, part) = ShardTask.from_dict(shard), _partition(shard["domain"])
        get_current_context()["shard_label"] = task.label
        return {**task.to_dict(), **step(config=config, store=store, part=task.part(part), key=task.key)}

    @task(trigger_rule="all_done")
    def find_duplicates(domains: list[str]) -> list[dict]:
        """Per domain: gather its shards, decide dedup over the whole partition; hand on every shard to
        finish. A domain whose shards did not all finish is left out (its auto_label says so); the others go on."""
        from pipelines.weekly import decide_shards

        shards = []
        for domain in domains:
            config, store, part = _partition(domain)
            try:
                shards.extend(t.to_dict() for t in decide_shards(config=config, store=store, part=part))
            except Exception:  # one domain's failure is its own: logged here, reported by its auto_label
                log.exception("find_duplicates %s: not decided; it will not be published", part.label)
        return shards

    @task(map_index_template="{{ shard_label }}")
    def finish_shard(shard: dict) -> dict:
        """The partition's dedup decision applied to one shard, its labels, its validation."""
        from pipelines.weekly import ShardTask, finish_shard as step

        task, (config, store, part) = ShardTask.from_dict(shard), _partition(shard["domain"])
        get_current_context()["shard_label"] = task.label
        return {**task.to_dict(), "key": step(config=config, store=store, part=task.part(part), key=task.key)}

    @task_group
    def partition(domain: str):
        """One domain's partition-wide steps after its shards finished: each mapped instance runs its own
        chain, so one domain failing validation (or losing a shard) blocks only its own publication."""

        @task(map_index_template="{{ domain }}", trigger_rule="all_done")
        def auto_label(domain: str) -> dict:
            from pipelines.serialize import get_json
            from pipelines.storage import NotFound
            from pipelines.weekly import finish_labels

            config, store, part = _partition(domain)
            try:
                dedup = get_json(store, part.staging(config, "dedup.json"))
            except NotFound:
                raise RuntimeError(f"{part.label}: find_duplicates did not decide this partition (see its "
                                   "log, and the shard tasks of this domain)") from None
            result = finish_labels(config=config, store=store, part=part, key=dedup["key"])
            return {"domain": domain, **result.to_dict()}

        @task(map_index_template="{{ domain }}")
        def validate_batch(labelled: dict) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.weekly import ValidationFailed, validate_batch as step

            try:
                return _run_step(step, labelled)
            except ValidationFailed as exc:
                raise AirflowFailException(str(exc)) from None  # deterministic: retrying cannot help

        @task(map_index_template="{{ domain }}", outlets=[CURATED])
        def publish_partition(validated: dict, *, outlet_events=None) -> dict:
            from airflow.sdk import Asset
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.weekly import InputsRemoved, publish_partition as step, record_result

            config, store, part = _partition(validated["domain"])
            try:
                result = step(config=config, store=store, part=part, key=validated["key"],
                              who=get_current_context()["run_id"])
            except InputsRemoved as exc:
                raise AirflowFailException(str(exc)) from None  # needs a person's decision (docs/RUNBOOK.md)
            record_result(config, store, part, result)
            if result.published:
                outlet_events[CURATED].add(Asset(name=f"curated_{part.domain}"),
                                           extra={"interval": part.interval.name, "version": result.version})
            return {"domain": part.domain, "published": result.published, "version": result.version}

        labelled = auto_label(domain)
        finished >> labelled  # every shard task of the run has ended (all_done: one domain's failure is its own)
        return publish_partition(validate_batch(labelled))

    @task(trigger_rule="all_done")
    def republish_displaced(domains: list[str]) -> list[dict]:
        """Re-publish later weeks displaced by this one (a backfill), for every domain that published;
        delete the run's staging; then fail the run if any domain did not publish (its own tasks say why
        and already alerted)."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.weekly import clean_run_staging, collect_results, republish_displaced as step

        config, store, part = _partition("_run")
        results = collect_results(config, store, part.interval, part.run_key)
        targets = [t for r in results.values() for t in r.get("republish", [])]
        try:
            done = step(config=config, store=store, targets=targets, run_key=part.run_key) if targets else []
        finally:  # staging holds raw, unmasked text: it never outlives the run, whatever failed
            clean_run_staging(config, store, part.interval, part.run_key, domains)
        missing = sorted(set(domains) - set(results))
        if missing:
            raise AirflowFailException(f"no partition published for {missing} in {part.interval.name}: "
                                       "see their validate_batch / publish_partition logs")
        return done

    domains = list_domains()
    shards = plan_shards(domains)
    # route_feedback executes feedback release requests before any domain lists landing.
    planned = ingest_landing.expand(domain=domains)
    route_feedback() >> planned
    ingest_files.expand(files=plan_files(planned)) >> shards
    numbered = number_pii(domains)
    clean_shard.expand(shard=shards) >> numbered
    labelled = label_shard.expand(shard=govern_shard.expand(shard=numbered))
    decided = find_duplicates(domains)
    labelled >> decided
    finished = finish_shard.expand(shard=decided)  # read by partition()
    published = partition.expand(domain=domains)
    published >> republish_displaced(domains)


weekly_ingest()
