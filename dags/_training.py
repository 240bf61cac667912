"""The training DAGs' shared tasks: ``list_domains``, then one ``train_domain`` group per model slot.

Not a DAG file (``.airflowignore`` keeps the DAG processor out of it). ``domain_finetune`` and
``monthly_full_retrain`` import it as ``dags._training``: the project root is on ``PYTHONPATH`` wherever Airflow
runs (Dockerfile, compose, Helm values, scripts/lib.sh), and Airflow 3 does not put the DAG folder on ``sys.path``.
Task bodies only call ``pipelines.finetune``; plans and trained runs cross XCom as the small JSON dicts of
:class:`pipelines.finetune.TrainPlan` / :class:`pipelines.finetune.TrainedRun`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, get_current_context, task, task_group

from mlops_airflow import task_store, who

IDENTITY = "training"  # the S3 identity training tasks act as: may write models/ and privacy/, never landing/


def training_params(kind: str) -> dict[str, Param]:
    """The params of a training DAG (Trigger DAG w/ config): domain, per-run epsilon, dry run."""
    return {
        "domain": Param("", type="string", description="one domain (or model slot), or empty for every one with data"),
        "epsilon": Param(None, type=["null", "number"], exclusiveMinimum=0,
                         description=f"per-run target epsilon (default: the domain's {kind}_epsilon)"),
        "dry_run": Param(False, type="boolean", description="plan and check the budget only"),
    }


def _label(domain: str) -> None:
    """Show the mapped instance's domain as its map index in the UI (``map_index_template``)."""
    get_current_context()["domain"] = domain


def _request(domain: str, *, kind: str) -> dict:
    """The training request of this DAG run for one domain: run id, params, who asked."""
    context = get_current_context()
    params = context["params"]
    return {
        "domain": domain,
        "kind": kind,
        # One ledger entry and one checkpoint folder per (DAG run, domain): a retry resumes, never re-spends.
        "run_id": f"{kind}-{domain}-{context['run_id']}",
        "epsilon": params.get("epsilon"),
        "dry_run": bool(params.get("dry_run")),
        "requested_by": who(),
    }


def list_domains(*, kind: str):
    """Task ``list_domains``: the model slots with something to train (or the one named by the ``domain`` param)."""

    @task
    def list_domains() -> list[str]:
        from pipelines.config import load_config
        from pipelines.finetune import domains_to_train

        config = load_config()
        only = get_current_context()["params"]["domain"] or None
        return domains_to_train(config=config, store=task_store(config, identity=IDENTITY), kind=kind, only=only)

    return list_domains()


def gpu_slots() -> int:
    """Slots of the ``gpu`` pool one ``train_model`` task takes: the most ``training.devices`` of any domain.

    The pool counts GPUs, not tasks, so two runs never share a GPU. Read when the DAG is parsed (pool slots are
    fixed then, and a mapped task has one value for all its domains); ``load_config`` reads a local file.
    """
    from pipelines.config import load_config

    config = load_config()
    return max([config.training.devices, *(config.for_domain(d).training.devices for d in config.domains)])


def train_domain(*, kind: str, plan_task_id: str):
    """Task group ``train_domain`` of one slot: ``<plan_task_id>`` -> ``train_model`` (pool and queue ``gpu``,
    ``training.devices`` slots: one per GPU its torchrun job uses) -> ``approve_promotion`` (a person's decision in
    Airflow's "Required actions" for a slot in ``artifacts.require_approval``; others pass at once; a rejection
    skips the promotion) -> ``promote_model``. Expand it over
    ``list_domains``: each slot runs its own chain, so a slot refused for budget (or failing) blocks only itself.
    """

    @task(task_id=plan_task_id, map_index_template="{{ domain }}")
    def plan(domain: str) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.config import load_config
        from pipelines.finetune import RunRefused, plan_run

        _label(domain)
        config = load_config()
        try:
            return plan_run(config=config, store=task_store(config, identity=IDENTITY), request=_request(domain, kind=kind)).to_dict()
        except RunRefused as exc:
            raise AirflowFailException(str(exc)) from None  # budget or data: retrying cannot help

    @task(queue="gpu", pool="gpu", pool_slots=gpu_slots(), map_index_template="{{ domain }}",
          retry_delay=dt.timedelta(seconds=30))
    def train_model(plan: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.config import load_config
        from pipelines.finetune import TrainPlan, train_run

        planned = TrainPlan.from_dict(plan)
        _label(planned.domain)
        if planned.dry_run:
            raise AirflowSkipException(f"dry run: {planned.domain} would train {planned.steps} steps, "
                                       f"sigma={planned.noise_multiplier:.3f}, epsilon={planned.epsilon:.4f}")
        config = load_config()
        return train_run(config=config, store=task_store(config, identity=IDENTITY), plan=planned).to_dict()

    @task(map_index_template="{{ domain }}")
    def promote_model(trained: dict) -> dict:
        from pipelines.config import load_config
        from pipelines.finetune import TrainedRun, promote_run

        run = TrainedRun.from_dict(trained)
        _label(run.domain)
        config = load_config()
        return promote_run(config=config, store=task_store(config, identity=IDENTITY), trained=run, who=who()).to_dict()

    @task_group
    def train_domain(domain: str):
        from mlops_approval import PromotionApprovalOperator

        trained = train_model(plan(domain))
        approval = PromotionApprovalOperator(task_id="approve_promotion", trained=trained,
                                             map_index_template="{{ domain }}")
        promoted = promote_model(trained)
        approval >> promoted
        return promoted

    return train_domain
