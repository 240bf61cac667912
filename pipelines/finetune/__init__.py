"""Domain training runs: curated partitions -> DP training -> artifact -> gate -> production.

One run of one model slot goes through three steps, each a task of the ``domain_finetune`` and
``monthly_full_retrain`` DAGs, and all three run in order by ``python -m pipelines train domain``:

1. :func:`plan_run` (``plan.py``): picks the records (content hashes) from every committed partition (weekly: only
   records no weekly run has read yet, so a record a backfill moved is not trained again; monthly: all of them; at
   most ``privacy.max_records_per_subject`` per subject), splits examples by content hash (the held-out split the
   gate compares on), calibrates the noise for the slot's per-run ε and checks every record's budget
   (``pipelines.privacy``) **before any training**, then reserves the spend on exactly those records in the ledger.
   -> :class:`TrainPlan`
2. :func:`train_run` (``run.py``): fetches and verifies the start model the plan pinned (weekly: production, or the
   base model the first time; monthly: the base model), trains with Opacus DP-SGD from the pinned partition
   versions, checkpointing every epoch under ``<checkpoint_root>/<run_id>`` (a retry resumes there), evaluates
   production on the same held-out split, and pushes a content-addressed artifact with its manifest (data digests,
   DP parameters and ε, metrics, code version) and model card. -> :class:`TrainedRun`
3. :func:`promote_run` (``promote.py``): the evaluation gate against production; promotes with a create-only
   numbered record or alerts and leaves production untouched. -> :class:`TrainedRun` with the verdict

Base models (the start of a first weekly run and of every monthly retrain) are built by :func:`build_domain_base`
or imported from a user's pretrained snapshot by :func:`import_domain_base`
(``base.py``). The hand-overs are frozen dataclasses (``handover.py``) with ``to_dict()/from_dict()`` for XCom.

Every step takes a model slot name where it takes ``domain``: a configured domain, or the forecaster slot
``<domain>_forecast`` of a domain with ``training.forecast: true`` (:mod:`pipelines.forecast`).
"""

from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.finetune.base import BASE_PREFIX_PART, base_ref, build_domain_base, import_domain_base
from pipelines.finetune.handover import (
    KINDS, PinnedPartition, RunRefused, RunRequest, StartModel, TrainedRun, TrainPlan,
)
from pipelines.finetune.inputs import code_version
from pipelines.finetune.plan import domains_to_train, plan_run
from pipelines.finetune.promote import gate_metric, promote_run
from pipelines.finetune.run import checkpoint_root, train_run
from pipelines.storage import ObjectStore


def run_domain(*, config: PipelineConfig, store: ObjectStore, request: RunRequest, who: str,
               log_every: int = 10) -> TrainPlan | TrainedRun:
    """All three steps in this process (the CLI on a GPU box; the DAGs run them as separate tasks).

    Returns:
        The plan of a dry run, else the promoted (or refused) trained run.
    """
    plan = plan_run(config=config, store=store, request=request)
    if plan.dry_run:
        return plan
    trained = train_run(config=config, store=store, plan=plan, log_every=log_every)
    return promote_run(config=config, store=store, trained=trained, who=who)


__all__ = [
    "BASE_PREFIX_PART", "KINDS", "PinnedPartition", "RunRefused", "RunRequest", "StartModel", "TrainPlan",
    "TrainedRun", "base_ref", "build_domain_base", "import_domain_base", "checkpoint_root", "code_version", "domains_to_train",
    "gate_metric", "plan_run", "promote_run", "run_domain", "train_run",
]
