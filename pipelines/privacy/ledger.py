"""The privacy ledger's lifecycle: plan a DP run, reserve its spend before it trains, record that it finished.

Lifecycle: ``plan_run`` (calibrate and check, writes nothing) -> ``reserve_budget`` (write the
entry, re-check against every entry, then decide) -> train only with a grant -> ``complete_run``.
An entry counts as spent unless its decision is ``void``: a crash never under-counts. The objects
and their layout are :mod:`pipelines.privacy.ledger_store`.

A plan given ``records`` is checked per record (``record_accounting``); one without is checked per
partition (legacy callers).

Why two runs cannot both spend the last budget with create-only writes only: each run writes its
entry *before* listing the ledger. Of the runs that were granted on a partition, the one whose entry
was written last listed after every other granted entry existed, and none of those can be void (a
run has one decision), so its check composed all of them and passed; composition is monotone, so
the granted set fits. Two racing runs may both void (safe). The decision is a single create-only
key, so an operator's ``release_budget`` (void) and the run's grant cannot both win.

Accounting uses the planned steps, or the actual ones if a run reports more: a run that stops
early may have stopped because of what it saw in the data, so its unused steps are not refunded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipelines.partition import Interval
from pipelines.privacy.accounting import (
    Charge,
    PartitionSpend,
    calibrate_noise,
    compose_epsilon,
    partition_spend,
)
from pipelines.privacy.config import KINDS, PrivacyConfig
from pipelines.privacy.ledger_store import (
    DECISION_SUFFIX,
    DONE_SUFFIX,
    LedgerEntry,
    LedgerError,
    LedgerRecord,
    check_run_id,
    dump_object,
    entry_key,
    ledger_folder,
    now_stamp,
    read_ledger,
    record_runs,
)
from pipelines.privacy.record_accounting import RecordGroupSpend, RecordRun, check_record_budget, subject_epsilons
from pipelines.privacy.record_store import (
    RECORDS_SUFFIX,
    SUBJECTS_SUFFIX,
    RecordSetError,
    record_ref,
    write_record_object,
)
from pipelines.privacy.records import RecordSet, SubjectMap, check_delta
from pipelines.storage import NotFound, ObjectStore

log = logging.getLogger("pipelines.privacy")

# Fields of an entry that define its spend: a retry with the same run_id must match them exactly.
_PLAN_FIELDS = ("domain", "kind", "partitions", "delta", "sample_rate", "noise_multiplier", "steps", "max_grad_norm",
                "records", "subjects")


class BudgetExceeded(ValueError):
    """A run would take a partition past its privacy budget; nothing was trained."""

    def __init__(self, message: str, *, domain: str, kind: str, partitions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.domain = domain
        self.kind = kind
        self.partitions = tuple(partitions)


class DeltaTooLarge(BudgetExceeded):
    """δ is not well below 1/n for the records a run reads (δ > 1/(10 n)); nothing was trained."""


def canonical_partitions(partitions: Iterable[str]) -> tuple[str, ...]:
    """Partition names as the ledger stores them: canonical interval names, sorted, unique.

    One interval under two spellings would be accounted as two partitions, so names are normalized.
    """
    if isinstance(partitions, str):
        raise ValueError("partitions must be a list of interval names, not one string")
    names = sorted({Interval.parse(p).name for p in partitions})
    if not names:
        raise ValueError("partitions is empty: a run must name the partitions it reads")
    return tuple(names)


@dataclass(frozen=True)
class RunPlan:
    """A checked plan for one DP run: the noise to train with and each partition's spend after it."""

    domain: str
    kind: str
    partitions: tuple[str, ...]
    sample_rate: float
    steps: int
    noise_multiplier: float
    epsilon: float
    delta: float
    accountant: str
    max_grad_norm: float
    secure_mode: bool
    spend: tuple[PartitionSpend, ...] = field(default=())
    # The records the run reads (the unit of account) and, optionally, their subjects; with them the
    # plan is checked per record and ``record_spend`` holds each record group's spend after the run.
    record_set: RecordSet | None = None
    subject_map: SubjectMap | None = None
    record_spend: tuple[RecordGroupSpend, ...] = field(default=())
    # The worst subject's ε after this run (group privacy over its records; see subject_epsilons).
    subject_epsilon: float | None = None

    def entry(self, *, run_id: str, created_by: str = "", created_at: str | None = None) -> LedgerEntry:
        """The ledger entry that reserves this plan under ``run_id``."""
        check_run_id(run_id)
        records = None if self.record_set is None else record_ref(run_id, self.record_set, suffix=RECORDS_SUFFIX)
        subjects = None if self.subject_map is None else record_ref(run_id, self.subject_map, suffix=SUBJECTS_SUFFIX)
        return LedgerEntry(run_id=run_id, domain=self.domain, kind=self.kind,
                           partitions=self.partitions, epsilon=self.epsilon, delta=self.delta,
                           sample_rate=self.sample_rate, noise_multiplier=self.noise_multiplier, steps=self.steps,
                           accountant=self.accountant, max_grad_norm=self.max_grad_norm,
                           secure_mode=self.secure_mode, created_at=created_at or now_stamp(), created_by=created_by,
                           records=records, subjects=subjects, subject_epsilon=self.subject_epsilon)

    def record_run(self, run_id: str = "(this run)") -> RecordRun:
        if self.record_set is None:
            raise ValueError("this plan names partitions only: plan it with records= to account per record")
        return RecordRun(run_id=run_id, kind=self.kind, mechanism=(self.noise_multiplier, self.sample_rate, self.steps),
                         records=self.record_set, subjects=self.subject_map)

    def charge(self, run_id: str = "(this run)") -> Charge:
        return Charge(run_id=run_id, kind=self.kind, partitions=self.partitions,
                      mechanism=(self.noise_multiplier, self.sample_rate, self.steps))


def _over_budget(*, config: PrivacyConfig, domain: str, kind: str, partitions: Sequence[str],
                 charges: Sequence[Charge], new: Charge | None, what: str) -> tuple[list[PartitionSpend], str]:
    """Spend of each partition with every charge (plus ``new``); a refusal message if any is over."""
    spends, problems = [], []
    for p in partitions:
        before = partition_spend(config=config, partition=p, charges=charges)
        after = partition_spend(config=config, partition=p, charges=[*charges, new] if new else charges)
        spends.append(after)
        over = after.over_budget()
        if over:
            kind_eps = after.weekly_epsilon if kind == "weekly" else after.monthly_epsilon
            kind_before = before.weekly_epsilon if kind == "weekly" else before.monthly_epsilon
            problems.append(
                f"partition {p}: {', '.join(over)} exceeded -> {kind} ε {kind_before:.4g} -> {kind_eps:.4g} "
                f"(share {config.budget_for(kind):.4g}), total ε {before.epsilon:.4g} -> {after.epsilon:.4g} "
                f"(budget {config.epsilon:.4g}); already read by {len(before.runs)} run(s)"
                + (f" [{', '.join(before.runs[-5:])}]" if before.runs else ""))
    if not problems:
        return spends, ""
    message = (f"privacy budget of domain {domain} (δ={config.delta:g}, {config.accountant}): {what}\n  "
               + "\n  ".join(problems)
               + f"\nNothing was trained. Leave the partition(s) out of this run (see `python -m pipelines privacy "
                 f"budget --domain {domain}`), or lower privacy.{kind}_epsilon / the steps or sample rate; "
                 "a partition whose budget is spent can no longer be trained on.")
    return spends, message


def plan_run(*, config: PrivacyConfig, store: ObjectStore, domain: str, kind: str, partitions: Iterable[str],
             sample_rate: float, steps: int, run_id: str | None = None, records: RecordSet | None = None,
             subjects: SubjectMap | None = None) -> RunPlan:
    """Calibrate a run's noise to its target ε and check it against the ledger. Writes nothing.

    Args:
        config: the domain's privacy settings (``config.for_domain(domain).privacy``).
        store: the object store holding the ledger.
        domain: the domain trained.
        kind: ``weekly`` (incremental fine-tune) or ``monthly`` (full retrain).
        partitions: interval names of every curated partition the run reads.
        sample_rate: Poisson sampling rate q (expected batch size / records read).
        steps: optimizer steps planned (the most the run will take).
        run_id: when re-planning a reservation that may already exist (a retried reserve step), its
            own entry is not counted twice.
        records: the content hashes the run reads (``RecordSet``). With them, δ is checked against
            their number and the budget per record: every record composes the runs that read it plus
            this one. Without them (legacy callers) the check is per partition.
        subjects: the subject of each record that has one (after ``bound_contributions``).

    Returns:
        The plan: noise multiplier, the run's ε, and each partition's (or record group's) spend after the run.

    Raises:
        BudgetExceeded: the run would take a partition / record past its kind's share or the total budget.
        DeltaTooLarge: δ > 1/(10 n) for the n records read.
        ValueError: invalid arguments.
        LedgerError: per-record planning on a ledger with legacy entries (migrate it first).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    names = canonical_partitions(partitions)
    target = config.target_for(kind)
    sigma = calibrate_noise(target_epsilon=target, delta=config.delta, sample_rate=sample_rate, steps=steps,
                            accountant=config.accountant)
    epsilon = compose_epsilon([(sigma, sample_rate, steps)], delta=config.delta, accountant=config.accountant)
    plan = RunPlan(domain=domain, kind=kind, partitions=names, sample_rate=float(sample_rate), steps=int(steps),
                   noise_multiplier=sigma, epsilon=epsilon, delta=config.delta, accountant=config.accountant,
                   max_grad_norm=float(config.max_grad_norm), secure_mode=config.secure_mode)
    if records is not None:
        if not len(records):
            raise ValueError("records is empty: a run must read at least one record")
        try:
            check_delta(delta=config.delta, records=len(records), domain=domain)
        except ValueError as exc:
            raise DeltaTooLarge(str(exc), domain=domain, kind=kind, partitions=names) from None
        plan = RunPlan(**{**plan.__dict__, "record_set": records, "subject_map": subjects})
        ledger = read_ledger(config=config, store=store, domain=domain)
        runs = record_runs(config=config, store=store, domain=domain, records=ledger, exclude_run=run_id)
        groups, problem = check_record_budget(config=config, domain=domain, runs=runs,
                                              new=plan.record_run(run_id or "(this run)"))
        if problem:
            raise BudgetExceeded(problem, domain=domain, kind=kind, partitions=names)
        worst_subject = None
        if subjects is not None:
            spends = subject_epsilons(config=config, runs=[*runs, plan.record_run(run_id or "(this run)")])
            worst_subject = spends[0].epsilon if spends else 0.0
        return RunPlan(**{**plan.__dict__, "record_spend": tuple(groups), "subject_epsilon": worst_subject})
    charges = [r.charge() for r in read_ledger(config=config, store=store, domain=domain)
               if r.counted and r.entry.run_id != run_id]
    spends, problem = _over_budget(config=config, domain=domain, kind=kind, partitions=names, charges=charges,
                                   new=plan.charge(), what=f"a {kind} run at ε={epsilon:.4g} "
                                                           f"(q={sample_rate:g}, {steps} steps) does not fit")
    if problem:
        raise BudgetExceeded(problem, domain=domain, kind=kind, partitions=names)
    return RunPlan(**{**plan.__dict__, "spend": tuple(spends)})


def _decide(store: ObjectStore, key: str, decision: str, *, run_id: str, reason: str, by: str) -> dict:
    """Write the run's one decision; return whichever decision won."""
    body = {"run_id": run_id, "decision": decision, "reason": reason, "by": by, "at": now_stamp()}
    if store.put(key, dump_object(body), if_none_match=True):
        return body
    return json.loads(store.get(key))


def reserve_budget(*, config: PrivacyConfig, store: ObjectStore, plan: RunPlan, run_id: str,
                   created_by: str = "") -> LedgerEntry:
    """Reserve a planned run's spend in the ledger; return only if the run may train.

    Writes ``<run_id>.json`` create-only, re-lists the domain's ledger, composes every partition the
    run reads with every entry not void (this one and concurrent ones included), and writes the
    run's decision. Retrying with the same ``run_id`` and plan is safe: a granted run is granted
    again, a refused one is refused again, an undecided one is re-checked.

    A grant covers ONE training attempt: an attempt that may have touched the data (a retried
    training task) must reserve under a new ``run_id`` (e.g. suffix the try number), so the
    earlier attempt stays charged.

    Args:
        config: the domain's privacy settings.
        store: the object store holding the ledger.
        plan: from ``plan_run`` (its spend may be stale: the check is redone here).
        run_id: unique id of the run (e.g. the Airflow run id + kind).
        created_by: who or what reserved (audit).

    Returns:
        The entry as stored; train with its ``noise_multiplier``, ``sample_rate``, ``steps`` (at most).

    Raises:
        BudgetExceeded: the budget no longer fits (another run got there first, or a race: both refused).
        LedgerError: ``run_id`` already names a different run.
    """
    entry = plan.entry(run_id=run_id, created_by=created_by)
    key = entry_key(config=config, domain=plan.domain, run_id=run_id)
    decision_key = key[: -len(".json")] + DECISION_SUFFIX
    folder = ledger_folder(config=config, domain=plan.domain)
    try:  # the record set first: an entry never names a missing set
        if plan.record_set is not None:
            write_record_object(store, folder=folder, ref=entry.records, value=plan.record_set)
        if plan.subject_map is not None:
            write_record_object(store, folder=folder, ref=entry.subjects, value=plan.subject_map)
    except RecordSetError as exc:
        raise LedgerError(str(exc)) from None
    if not store.put(key, dump_object(entry.to_json()), if_none_match=True):
        existing = LedgerEntry.from_json(json.loads(store.get(key)), key=key)
        if any(getattr(existing, f) != getattr(entry, f) for f in _PLAN_FIELDS):
            raise LedgerError(f"run id {run_id!r} already reserved a different run in {store.uri(key)}: "
                              "use a new run id for a new plan")
        entry = existing
        try:
            earlier = json.loads(store.get(decision_key))
        except NotFound:
            earlier = None
        if earlier and earlier.get("decision") == "granted":
            return entry
        if earlier:
            raise BudgetExceeded(f"run {run_id} of domain {plan.domain} was refused earlier: {earlier.get('reason')}",
                                 domain=plan.domain, kind=plan.kind, partitions=plan.partitions)
    # Our own entry is charged from the plan even if the listing lags our write.
    ledger = read_ledger(config=config, store=store, domain=plan.domain)
    if plan.record_set is not None:
        runs = record_runs(config=config, store=store, domain=plan.domain, records=ledger, exclude_run=run_id)
        _groups, problem = check_record_budget(config=config, domain=plan.domain, runs=runs,
                                               new=plan.record_run(run_id))
        if problem:
            problem = (f"run {run_id} was reserved, but with every other reservation it does not fit; it has been "
                       f"voided:\n  " + problem.replace("\n", "\n  "))
    else:
        others = [r.charge() for r in ledger if r.counted and r.entry.run_id != run_id]
        _spends, problem = _over_budget(config=config, domain=plan.domain, kind=plan.kind, partitions=plan.partitions,
                                        charges=others, new=plan.charge(run_id),
                                        what=f"run {run_id} ({plan.kind}, ε={plan.epsilon:.4g}) was reserved, but "
                                             "with every other reservation it does not fit; it has been voided")
    if problem:
        won = _decide(store, decision_key, "void", run_id=run_id, reason=problem.splitlines()[1].strip(),
                      by=created_by or "reserve_budget")
        if won.get("decision") == "granted":  # a concurrent retry of this same run was granted first
            return entry
        log.warning("privacy: %s", problem)
        raise BudgetExceeded(problem, domain=plan.domain, kind=plan.kind, partitions=plan.partitions)
    won = _decide(store, decision_key, "granted", run_id=run_id, reason="within budget", by=created_by or "reserve_budget")
    if won.get("decision") != "granted":
        raise BudgetExceeded(f"run {run_id} of domain {plan.domain} was voided before it was granted: "
                             f"{won.get('reason')} (by {won.get('by')})", domain=plan.domain, kind=plan.kind,
                             partitions=plan.partitions)
    return entry


def complete_run(*, config: PrivacyConfig, store: ObjectStore, domain: str, run_id: str, steps: int,
                 epsilon: float) -> LedgerRecord:
    """Record that a granted run finished: actual steps and the ε its training accountant reported.

    Idempotent for the same values. The spend stays the planned one (or the actual steps if more).

    Raises:
        LedgerError: no such entry, the run was never granted, or it was completed with other values.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r}: use the number of optimizer steps taken (>= 0)")
    key = entry_key(config=config, domain=domain, run_id=run_id)
    base = key[: -len(".json")]
    try:
        entry = LedgerEntry.from_json(json.loads(store.get(key)), key=key)
    except NotFound:
        raise LedgerError(f"no ledger entry {store.uri(key)}: a run must reserve_budget before training") from None
    try:
        decision = json.loads(store.get(base + DECISION_SUFFIX))
    except NotFound:
        decision = None
    if not decision or decision.get("decision") != "granted":
        raise LedgerError(f"run {run_id} of {domain} was not granted ({(decision or {}).get('decision', 'undecided')}): "
                          "it must not have trained; investigate before recording it")
    if steps > entry.steps:
        log.error("privacy: run %s took %d steps, more than the %d reserved: the ledger counts %d", run_id, steps,
                  entry.steps, steps)
    body = {"run_id": run_id, "steps": steps, "epsilon": float(epsilon), "accountant": config.accountant,
            "completed_at": now_stamp()}
    if not store.put(base + DONE_SUFFIX, dump_object(body), if_none_match=True):
        existing = json.loads(store.get(base + DONE_SUFFIX))
        if existing.get("steps") != steps or existing.get("epsilon") != float(epsilon):
            raise LedgerError(f"run {run_id} was already completed with steps={existing.get('steps')} "
                              f"epsilon={existing.get('epsilon')}")
        body = existing
    return LedgerRecord(entry=entry, decision=decision, done=body)


def release_budget(*, config: PrivacyConfig, store: ObjectStore, domain: str, run_id: str, reason: str,
                   by: str) -> bool:
    """Void a reservation that was never granted (e.g. a run that crashed while reserving).

    Returns:
        True if the reservation is now void (its spend no longer counts); False if the run had been
        granted: it may have trained, so its spend stays.

    Raises:
        LedgerError: no such entry.
    """
    if not reason.strip():
        raise ValueError("reason is required: say why the reservation is released (audit)")
    key = entry_key(config=config, domain=domain, run_id=run_id)
    if not store.exists(key):
        raise LedgerError(f"no ledger entry {store.uri(key)}")
    won = _decide(store, key[: -len(".json")] + DECISION_SUFFIX, "void", run_id=run_id, reason=reason, by=by)
    return won.get("decision") == "void"
