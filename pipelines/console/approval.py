"""Promotion approvals: whether a trained run's promotion waits for a person, and what that person is shown.

A domain listed in ``artifacts.require_approval`` (a forecaster slot follows its domain) is promoted by
``domain_finetune`` / ``monthly_full_retrain`` only after a human approves in Airflow's human-in-the-loop
mechanism (the standard provider's ``ApprovalOperator``, wired in ``dags/_training.py``). The request shows the
gate's numbers against production and the model card; a rejection skips ``promote_model``, so production is
untouched. No Airflow import here: the operator calls :func:`approval_request`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.artifacts import evaluate_candidate, load_ref
from pipelines.artifacts.card import CARD
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import TrainedRun
from pipelines.finetune.inputs import slot_configs
from pipelines.finetune.promote import gate_metric
from pipelines.forecast import model_slot
from pipelines.storage import ObjectStore

CARD_CHARS = 3000  # the card's head in the request body; the full card is on the console's models page


@dataclass(frozen=True)
class ApprovalRequest:
    """What a person decides on: a gated candidate of a domain that requires approval.

    Attributes:
        domain: the model slot (``medical``, ``finance_forecast``).
        run_id / artifact_id / version: the trained run and its artifact.
        gate: the gate decision (``GateDecision.to_dict()``): metric, candidate vs production, relative change.
        subject / body: the human-in-the-loop request's headline and Markdown body.
    """

    domain: str
    run_id: str
    artifact_id: str
    version: str
    gate: Mapping[str, Any]
    subject: str
    body: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def requires_approval(config: PipelineConfig, slot: str) -> bool:
    """Whether the promotion of ``slot``'s models waits for a person (its domain in ``require_approval``)."""
    return config.artifacts.requires_approval(slot) or config.artifacts.requires_approval(model_slot(config=config, name=slot).domain)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def approval_body(*, trained: TrainedRun, gate: Mapping[str, Any], card: str | None) -> str:
    """The Markdown a person reads before approving: the gate's numbers, privacy spend, then the model card."""
    change = gate.get("relative_change")
    lines = [
        f"**{trained.domain}** {trained.kind} run `{trained.run_id}` produced version **{trained.version}** "
        f"(`{trained.artifact_id}`).",
        "",
        "| gate | value |", "|---|---|",
        f"| metric | {gate.get('metric') or '-'} ({'higher' if gate.get('higher_is_better', True) else 'lower'} "
        "is better) |",
        f"| candidate | {_number(gate.get('candidate_value'))} |",
        f"| production | {_number(gate.get('production_value'))} |",
        f"| relative change | {'-' if change is None else f'{change:+.2%}'} (allowed drop "
        f"{_number(gate.get('max_drop'))}) |",
        f"| trivial baseline ({gate.get('trivial_metric') or '-'}) | margin {_number(gate.get('margin'))} |",
        f"| gate | {'passed' if gate.get('passed') else 'REFUSED'}: {gate.get('reason', '')} |",
        f"| privacy | ε {trained.epsilon:.4f} this run, {trained.steps} steps |",
        "",
        "Approve: the model becomes production (a create-only promotion record). "
        "Reject: production is untouched.",
    ]
    if card:
        lines += ["", "---", "", card[:CARD_CHARS] + ("\n\n…" if len(card) > CARD_CHARS else "")]
    return "\n".join(lines)


def approval_request(*, config: PipelineConfig, store: ObjectStore,
                     trained: TrainedRun | Mapping[str, Any]) -> ApprovalRequest | None:
    """The approval to ask for before promoting ``trained``, or None when no person needs to decide.

    None when nothing was trained (a dry run), when the slot does not require approval, or when the gate refuses
    the candidate (``promote_model`` then alerts and leaves production as it is: there is nothing to approve).
    """
    trained = trained if isinstance(trained, TrainedRun) else TrainedRun.from_dict(trained)
    if trained.skipped or not requires_approval(config, trained.domain):
        return None
    slot, _training, _privacy, artifacts, max_drop = slot_configs(config=config, name=trained.domain)
    ref = load_ref(store, trained.domain, trained.artifact_id, prefix=artifacts.prefix)
    metric, higher = gate_metric(config=config, domain=trained.domain)
    decision = evaluate_candidate(store, trained.domain, ref, max_drop=max_drop, metric=metric,
                                  higher_is_better=higher, prefix=artifacts.prefix,
                                  margin=artifacts.margin_for(slot.task), check_trivial=artifacts.trivial_gate)
    if not decision.passed:
        return None
    try:
        card = store.get(f"{ref.root}/{CARD}").decode("utf-8")
    except Exception:  # noqa: BLE001 - the card is shown when readable (an encrypted one is not)
        card = None
    gate = decision.to_dict()
    return ApprovalRequest(
        domain=trained.domain, run_id=trained.run_id, artifact_id=trained.artifact_id, version=trained.version,
        gate=gate, subject=f"Promote {trained.domain} model {trained.version}? "
                           f"({gate['metric']} {_number(gate['candidate_value'])} vs production "
                           f"{_number(gate['production_value'])})",
        body=approval_body(trained=trained, gate=gate, card=card))
