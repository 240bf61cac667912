"""``PromotionApprovalOperator``: the human decision before ``promote_model`` of a domain in ``artifacts.require_approval``.

A thin subclass of the standard provider's ``ApprovalOperator`` (Airflow's human-in-the-loop, the UI's "Required
actions" page and the HITL REST API). What a person is shown, and whether anyone is asked at all, comes from
:func:`pipelines.console.approval.approval_request`. Not asked (slot not configured, dry run, gate refused): the task
succeeds at once and ``promote_model`` runs as before (it refuses a failed gate itself). Approve: ``promote_model``
runs. Reject: this task and ``promote_model`` are skipped, production is untouched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

IDENTITY = "training"  # reads the candidate's manifest, evaluation and card under models/
# Unanswered for a week: the default answer (Reject) is taken, production stays as it is, the run can finish.
RESPONSE_TIMEOUT = dt.timedelta(days=7)


class PromotionApprovalOperator(ApprovalOperator):
    """Ask for approval of ``trained`` (a :class:`pipelines.finetune.TrainedRun` dict, usually an XComArg)."""

    template_fields = (*ApprovalOperator.template_fields, "trained")

    def __init__(self, *, trained: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Promote a model?")  # replaced in execute() by the candidate's headline
        # An explicit response timeout keeps the DAG's execution_timeout for the (short) execute phase only.
        kwargs.setdefault("response_timeout", RESPONSE_TIMEOUT)
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)
        super().__init__(**kwargs)
        self.trained = trained

    def execute(self, context):
        from mlops_airflow import task_store
        from pipelines.config import load_config
        from pipelines.console.approval import approval_request

        trained = dict(self.trained or {})
        context["domain"] = trained.get("domain", "")  # map_index_template="{{ domain }}"
        if not trained:
            self.log.info("Nothing was trained (dry run or skipped): no approval to ask for.")
            return {"required": False}
        config = load_config()
        request = approval_request(config=config, store=task_store(config, identity=IDENTITY), trained=trained)
        if request is None:
            self.log.info("%s: promotion needs no approval (not in artifacts.require_approval, or nothing passed "
                          "the gate).", trained.get("domain"))
            return {"required": False}
        self.subject, self.body = request.subject, request.body
        self.log.info("Waiting for a person to approve %s %s (Required actions page).", request.domain,
                      request.version)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        """Approve: succeed, ``promote_model`` runs. Reject: this task is skipped, and so is ``promote_model``.

        Skips itself rather than using ``ApprovalOperator``'s downstream skip: ``promote_model`` also takes
        ``train_model``'s output, and a skipped upstream (trigger rule ``all_success``) is what every runner
        (scheduler and ``dag.test()``) honours the same way.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        context["domain"] = dict(self.trained or {}).get("domain", "")
        answer = HITLOperator.execute_complete(self, context=context, event=event)
        if answer["chosen_options"][0] != self.APPROVE:
            who = (answer.get("responded_by_user") or {}).get("name", "a person")
            raise AirflowSkipException(f"promotion rejected by {who}: production untouched")
        return answer
