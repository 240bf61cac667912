"""Per-record accounting: compose, for every record, exactly the runs that read it.

Records read by the same set of runs have the same privacy loss, so the domain's records are
grouped by that set (their *signature*) and each group is composed once with the accountant. This
is exact (no per-bucket bound) and costs one composition per distinct signature, not per record.

A record no run read has ε = 0; a record's ε only grows when a run reads it, so moving records
between partitions cannot lower anyone's ε: partitions do not appear here at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.privacy.accounting import TOLERANCE, Mechanism, compose_epsilon
from pipelines.privacy.config import PrivacyConfig
from pipelines.privacy.records import RecordSet, SubjectMap, contains


@dataclass(frozen=True)
class RecordRun:
    """One counted run reduced to what per-record accounting needs."""

    run_id: str
    kind: str
    mechanism: Mechanism
    records: RecordSet
    subjects: SubjectMap | None = None


@dataclass(frozen=True)
class RecordGroup:
    """Records that were read by exactly the same runs."""

    runs: tuple[str, ...]
    count: int
    example: str  # hex digest of one member (the smallest), to name the group in messages


@dataclass(frozen=True)
class RecordGroupSpend:
    """What the runs of one record group composed to, against the domain's budget."""

    group: RecordGroup
    epsilon: float
    weekly_epsilon: float
    monthly_epsilon: float
    budget: float
    weekly_budget: float
    monthly_budget: float

    def over_budget(self) -> list[str]:
        out = []
        if self.weekly_epsilon > self.weekly_budget + TOLERANCE:
            out.append("weekly share")
        if self.monthly_epsilon > self.monthly_budget + TOLERANCE:
            out.append("monthly share")
        if self.epsilon > self.budget + TOLERANCE:
            out.append("total budget")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"runs": list(self.group.runs), "records": self.group.count, "example": self.group.example,
                "epsilon": self.epsilon, "weekly_epsilon": self.weekly_epsilon,
                "monthly_epsilon": self.monthly_epsilon, "budget": self.budget}


def group_records(candidates: RecordSet, runs: Sequence[RecordRun]) -> list[RecordGroup]:
    """Partition ``candidates`` by the set of ``runs`` that read each of them (exact).

    Returns:
        One group per distinct signature (the empty signature included: records no run read),
        largest first, then by runs.
    """
    cands = candidates.array()
    if not len(cands):
        return []
    # Only runs that read some candidate become columns: a domain's many disjoint weekly runs cost nothing.
    columns, readers = [], []
    for run in runs:
        mask = contains(run.records, candidates)
        if mask.any():
            columns.append(mask)
            readers.append(run)
    runs = readers
    hits = np.stack(columns, axis=1) if columns else np.zeros((len(cands), 1), dtype=bool)
    packed = np.ascontiguousarray(np.packbits(hits, axis=1))
    # One opaque item per row: a 1-D unique is much faster than unique(axis=0).
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _signatures, first, counts = np.unique(rows, return_index=True, return_counts=True)
    groups = []
    for g in range(len(first)):
        members = np.flatnonzero(hits[first[g]])
        groups.append(RecordGroup(runs=tuple(runs[j].run_id for j in members), count=int(counts[g]),
                                  example=bytes(cands[first[g]]).ljust(32, b"\0").hex()))
    return sorted(groups, key=lambda grp: (-grp.count, grp.runs, grp.example))


def group_spend(*, config: PrivacyConfig, group: RecordGroup, runs: Sequence[RecordRun],
                extra: Iterable[RecordRun] = ()) -> RecordGroupSpend:
    """Compose the runs of ``group`` (plus ``extra``, e.g. the run being planned) per kind and in total."""
    by_id = {r.run_id: r for r in runs}
    mine = [by_id[r] for r in group.runs] + list(extra)

    def eps(kind: str | None) -> float:
        return compose_epsilon([r.mechanism for r in mine if kind is None or r.kind == kind],
                               delta=config.delta, accountant=config.accountant)

    runs_ids = tuple(r.run_id for r in mine)
    return RecordGroupSpend(group=RecordGroup(runs=runs_ids, count=group.count, example=group.example),
                            epsilon=eps(None), weekly_epsilon=eps("weekly"), monthly_epsilon=eps("monthly"),
                            budget=float(config.epsilon), weekly_budget=config.weekly_budget,
                            monthly_budget=config.monthly_budget)


def check_record_budget(*, config: PrivacyConfig, domain: str, runs: Sequence[RecordRun],
                        new: RecordRun) -> tuple[list[RecordGroupSpend], str]:
    """Compose, for every record ``new`` reads, every earlier run that read it plus ``new``.

    Returns:
        Each group's spend after ``new``, and a refusal message ("" when every group fits) naming the
        worst group: its records, ε so far, what this run adds, and the budget.
    """
    spends, worst, worst_before, over = [], None, None, []
    for group in group_records(new.records, runs):
        before = group_spend(config=config, group=group, runs=runs)
        after = group_spend(config=config, group=group, runs=runs, extra=[new])
        spends.append(after)
        if after.over_budget():
            over.append(after)
            if worst is None or after.epsilon > worst.epsilon:
                worst, worst_before = after, before
    if worst is None:
        return spends, ""
    kind = new.kind
    kind_after = worst.weekly_epsilon if kind == "weekly" else worst.monthly_epsilon
    kind_before = worst_before.weekly_epsilon if kind == "weekly" else worst_before.monthly_epsilon
    alone = compose_epsilon([new.mechanism], delta=config.delta, accountant=config.accountant)
    earlier = worst_before.group.runs
    message = (
        f"privacy budget of domain {domain} (δ={config.delta:g}, {config.accountant}): run {new.run_id} ({kind}, "
        f"ε={alone:.4g} on its own) does not fit for {sum(s.group.count for s in over)} of its {len(new.records)} "
        f"records.\n  worst: {worst.group.count} record(s) (e.g. sha256 {worst.group.example[:16]}…) already read by "
        f"{len(earlier)} run(s)" + (f" [{', '.join(earlier[-5:])}]" if earlier else "")
        + f": {', '.join(worst.over_budget())} exceeded -> {kind} ε {kind_before:.4g} -> {kind_after:.4g} "
        f"(share {config.budget_for(kind):.4g}), total ε {worst_before.epsilon:.4g} -> {worst.epsilon:.4g} "
        f"(budget {config.epsilon:.4g})\nNothing was trained. Leave those records out of this run (a weekly run "
        f"trains only records no earlier weekly run read: untrained_records), or lower privacy.{kind}_epsilon / "
        "the steps or sample rate; a record whose budget is spent can no longer be trained on.")
    return spends, message


def record_epsilons(*, config: PrivacyConfig, runs: Sequence[RecordRun],
                    records: RecordSet | None = None) -> list[RecordGroupSpend]:
    """The composed spend of every record some run read (or of ``records``), grouped by signature."""
    if records is None:
        records = RecordSet()
        for run in runs:
            records = records.union(run.records)
    return [group_spend(config=config, group=g, runs=runs) for g in group_records(records, runs)]


@dataclass(frozen=True)
class SubjectSpend:
    """Group privacy of one subject: the chained guarantee over all of its records that runs read.

    With per-record guarantees (ε_i, δ) for the subject's m records, changing the whole subject is m
    single-record changes in a row, so the subject is (Σ ε_i, δ · Σ_i exp(Σ_{j>i} ε_j))-DP.
    """

    subject: str
    records: int
    epsilon: float
    delta: float
    max_records_per_run: int


def subject_epsilons(*, config: PrivacyConfig, runs: Sequence[RecordRun]) -> list[SubjectSpend]:
    """ε per subject (group privacy over its records' composed ε), largest first.

    Only runs that recorded subjects contribute subject membership; a record's ε composes every run
    that read it, with or without a subject map.
    """
    members: dict[bytes, set[bytes]] = {}
    per_run: dict[bytes, int] = {}
    for run in runs:
        for subject, recs in (run.subjects.subjects().items() if run.subjects else ()):
            members.setdefault(subject, set()).update(recs)
            per_run[subject] = max(per_run.get(subject, 0), len(recs))
    if not members:
        return []
    every = RecordSet.of({r for recs in members.values() for r in recs})
    eps_of: dict[bytes, float] = {}
    for spend in record_epsilons(config=config, runs=runs, records=every):
        eps_of.update({d: spend.epsilon for d in _members_of(spend.group, every, runs)})
    out = []
    for subject, recs in members.items():
        epsilons = sorted((eps_of[r] for r in recs), reverse=True)
        total, delta, tail = sum(epsilons), 0.0, 0.0
        for e in reversed(epsilons):  # δ · Σ_i exp(ε of the records chained after i)
            delta += config.delta * float(np.exp(tail))
            tail += e
        out.append(SubjectSpend(subject=subject.hex(), records=len(recs), epsilon=total, delta=min(delta, 1.0),
                                max_records_per_run=per_run[subject]))
    return sorted(out, key=lambda s: (-s.epsilon, s.subject))


def _members_of(group: RecordGroup, records: RecordSet, runs: Sequence[RecordRun]) -> list[bytes]:
    """The digests of ``records`` whose signature is exactly ``group.runs``."""
    mask = np.ones(len(records), dtype=bool)
    for run in runs:
        inside = contains(run.records, records)
        mask &= inside if run.run_id in group.runs else ~inside
    return [bytes(d).ljust(32, b"\0") for d in records.array()[mask]]
