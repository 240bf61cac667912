"""What one training step hands the next: the request, the plan, the trained run (frozen, JSON-safe for XCom).

``to_dict()`` gives exactly the dicts the steps exchanged before they were typed (the same XCom values, and the
same run marker ``<artifacts prefix>/<slot>/runs/<run id>.json`` in the object store); ``from_dict()`` reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines.config import ConfigError

KINDS = ("weekly", "monthly")  # the run kind: a weekly fine-tune or a monthly full retrain
START_SOURCES = ("production", "base")


class RunRefused(ValueError):
    """The run may not train (budget, no data, missing base model); the message says what to do."""


@dataclass(frozen=True)
class RunRequest:
    """What to train: one model slot (a domain or ``<domain>_forecast``), weekly or monthly, under a run id unique
    to the DAG run."""

    domain: str
    kind: str
    run_id: str
    epsilon: float | None = None
    dry_run: bool = False
    requested_by: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r}: use weekly or monthly")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ConfigError(f"epsilon={self.epsilon!r}: must be > 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunRequest:
        return cls(**values)


@dataclass(frozen=True)
class PinnedPartition:
    """One curated partition version a plan reads (training reads exactly this version again)."""

    interval: str
    version: Any
    rows: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "version": self.version, "rows": self.rows, "digest": self.digest}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PinnedPartition:
        return cls(interval=values["interval"], version=values["version"], rows=int(values["rows"]),
                   digest=values["digest"])


@dataclass(frozen=True)
class PlannedRecords:
    """The record set a plan reserved (the privacy unit): how many content hashes, and the sha256 of the
    ledger's ``<run_id>.records`` object. Training reads the set back from the ledger and checks it against this.
    """

    count: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PlannedRecords:
        return cls(count=int(values["count"]), sha256=str(values["sha256"]))


@dataclass(frozen=True)
class StartModel:
    """The artifact a run starts from: the slot's production model (weekly) or its base model.

    Attributes:
        artifact_id / version / root: the pinned artifact (``root`` is where it lives in the store).
        source: ``production`` (under ``<prefix>/<slot>/artifacts``) or ``base`` (under ``<prefix>/base/<slot>``).
    """

    artifact_id: str
    version: str
    root: str
    source: str

    def __post_init__(self) -> None:
        if self.source not in START_SOURCES:
            raise ConfigError(f"start model source={self.source!r}: use production or base")

    @property
    def is_base(self) -> bool:
        return self.source == "base"

    def to_dict(self) -> dict[str, Any]:
        return {"artifact_id": self.artifact_id, "version": self.version, "root": self.root, "from": self.source}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StartModel:
        return cls(artifact_id=values["artifact_id"], version=values["version"], root=values["root"],
                   source=values["from"])


@dataclass(frozen=True)
class TrainPlan:
    """A planned run (``plan_run``): what it reads, where it starts, its calibrated DP parameters.

    ``ledger_key`` is the privacy-ledger entry that reserves the spend (empty for a dry run: nothing reserved).
    ``records`` names the exact records (content hashes) the run reads and is charged for; ``subject_epsilon`` is
    the worst subject's ε once this run is included (None: the records carry no subject), under at most
    ``max_records_per_subject`` records per subject per run (None: unbounded).
    """

    domain: str
    kind: str
    task: str
    run_id: str
    dry_run: bool
    requested_by: str
    partitions: tuple[PinnedPartition, ...]
    train_examples: int
    eval_examples: int
    start: StartModel
    sample_rate: float
    steps: int
    noise_multiplier: float
    epsilon: float
    delta: float
    accountant: str
    max_grad_norm: float
    ledger_key: str = ""
    records: PlannedRecords | None = None
    subject_epsilon: float | None = None
    max_records_per_subject: int | None = None
    warnings: tuple[str, ...] = ()  # said before training: e.g. the data is too small for the budget

    def to_dict(self) -> dict[str, Any]:
        out = {"domain": self.domain, "kind": self.kind, "task": self.task, "run_id": self.run_id,
               "dry_run": self.dry_run, "requested_by": self.requested_by,
               "partitions": [p.to_dict() for p in self.partitions], "train_examples": self.train_examples,
               "eval_examples": self.eval_examples, "start": self.start.to_dict(), "sample_rate": self.sample_rate,
               "steps": self.steps, "noise_multiplier": self.noise_multiplier, "epsilon": self.epsilon,
               "delta": self.delta, "accountant": self.accountant, "max_grad_norm": self.max_grad_norm}
        if self.ledger_key:
            out["ledger_key"] = self.ledger_key
        if self.records is not None:
            out["records"] = self.records.to_dict()
        if self.subject_epsilon is not None:
            out["subject_epsilon"] = self.subject_epsilon
        if self.max_records_per_subject is not None:
            out["max_records_per_subject"] = self.max_records_per_subject
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainPlan:
        records = values.get("records")
        return cls(**{**values, "partitions": tuple(PinnedPartition.from_dict(p) for p in values["partitions"]),
                      "start": StartModel.from_dict(values["start"]), "ledger_key": values.get("ledger_key") or "",
                      "records": PlannedRecords.from_dict(records) if records else None,
                      "warnings": tuple(values.get("warnings") or ())})


@dataclass(frozen=True)
class TrainedRun:
    """A trained run (``train_run``), and after ``promote_run`` the gate's verdict.

    Attributes:
        artifact_id / version / root: the pushed artifact.
        metrics: held-out metrics of the new model; ``baseline``: production's on the same split.
        skipped: why nothing was trained (a dry run), else empty.
        promoted / gate / promotion: set by ``promote_run`` (None before): whether it went to production, the
            gate decision, and the number of the promotion record.
    """

    domain: str
    kind: str
    run_id: str
    task: str
    artifact_id: str = ""
    version: str = ""
    root: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    baseline: Mapping[str, Any] = field(default_factory=dict)
    epsilon: float = 0.0
    steps: int = 0
    skipped: str = ""
    promoted: bool | None = None
    gate: Mapping[str, Any] | None = None
    promotion: int | None = None

    @classmethod
    def skipped_plan(cls, plan: TrainPlan, why: str) -> TrainedRun:
        return cls(domain=plan.domain, kind=plan.kind, run_id=plan.run_id, task=plan.task, epsilon=plan.epsilon,
                   steps=plan.steps, skipped=why)

    def judged(self, *, promoted: bool, gate: Mapping[str, Any], promotion: int | None = None) -> TrainedRun:
        return replace(self, promoted=promoted, gate=dict(gate), promotion=promotion)

    def to_dict(self) -> dict[str, Any]:
        out = {"domain": self.domain, "kind": self.kind, "run_id": self.run_id, "task": self.task}
        if self.skipped:
            return {**out, "skipped": self.skipped}
        out.update({"artifact_id": self.artifact_id, "version": self.version, "root": self.root,
                    "metrics": dict(self.metrics), "baseline": dict(self.baseline), "epsilon": self.epsilon,
                    "steps": self.steps})
        if self.promoted is not None:
            out.update({"promoted": self.promoted, "gate": dict(self.gate or {})})
            if self.promoted:
                out["promotion"] = self.promotion
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainedRun:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in names})
