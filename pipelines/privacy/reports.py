"""Reports over the ledger: each partition's spend, the domain's worst-case ε after each run (``epsilon.svg``).

Per partition (``budget_report``) is what operators read in ``privacy budget``; the unit of account is the
record, so ``record_spend_history`` gives the worst record's ε after each run once the ledger has record sets.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.partition import Interval
from pipelines.privacy.accounting import Charge, PartitionSpend, partition_spend
from pipelines.privacy.config import PrivacyConfig
from pipelines.privacy.ledger_store import read_ledger, record_runs
from pipelines.privacy.record_accounting import group_records, group_spend
from pipelines.storage import ObjectStore


def budget_report(*, config: PrivacyConfig, store: ObjectStore, domain: str,
                  partitions: Iterable[str] = ()) -> list[PartitionSpend]:
    """Spent and remaining budget of every partition the ledger names (plus ``partitions``), by name.

    Args:
        config: the domain's privacy settings.
        store: the object store holding the ledger.
        domain: the domain.
        partitions: extra partition names to report even if no run read them (e.g. every curated one).
    """
    charges = [r.charge() for r in read_ledger(config=config, store=store, domain=domain) if r.counted]
    names = sorted({p for c in charges for p in c.partitions} | {Interval.parse(p).name for p in partitions})
    return [partition_spend(config=config, partition=p, charges=charges) for p in names]


def spend_history(*, config: PrivacyConfig, store: ObjectStore, domain: str) -> list[tuple[str, str, float]]:
    """The domain's worst-case spend after each counted run, oldest first (for ``epsilon.svg``).

    Returns:
        ``(created_at, run_id, epsilon)``: the max over partitions of the composed ε once that run is included.
    """
    out: list[tuple[str, str, float]] = []
    charges: list[Charge] = []
    for record in read_ledger(config=config, store=store, domain=domain):
        if not record.counted:
            continue
        charges.append(record.charge())
        # Only partitions this run read can have changed; the others keep the previous maximum.
        worst = max([partition_spend(config=config, partition=p, charges=charges).epsilon
                     for p in record.entry.partitions] + [out[-1][2] if out else 0.0])
        out.append((record.entry.created_at, record.entry.run_id, worst))
    return out


def record_spend_history(*, config: PrivacyConfig, store: ObjectStore, domain: str) -> list[tuple[str, str, float]]:
    """The worst record's composed ε after each counted run, oldest first (per-record ``spend_history``).

    Only records the new run read can have changed, so each step composes the groups of that run's records.

    Raises:
        LedgerError: a legacy entry without a record set (``privacy migrate`` first).
    """
    ledger = [r for r in read_ledger(config=config, store=store, domain=domain) if r.counted]
    runs = record_runs(config=config, store=store, domain=domain, records=ledger)
    out: list[tuple[str, str, float]] = []
    for i, (record, run) in enumerate(zip(ledger, runs)):
        so_far = runs[: i + 1]
        worst = max([group_spend(config=config, group=g, runs=so_far).epsilon
                     for g in group_records(run.records, so_far)] + [out[-1][2] if out else 0.0])
        out.append((record.entry.created_at, run.run_id, worst))
    return out
