"""``privacy ledger | budget | release | migrate``: read the privacy ledger, each partition's remaining budget,
and upgrade a per-partition ledger to per-record accounting.

Wired as ``python -m pipelines privacy ...`` through ``add_parser``; runs on its own as
``python -m pipelines.privacy.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def _load(args: argparse.Namespace):
    from pipelines.config import load_config
    from pipelines.storage import open_store

    from pipelines.forecast import model_slot

    config = load_config(getattr(args, "config", None))
    # A forecaster slot (finance_forecast) keeps its own ledger, charged against its domain's budget.
    domain = model_slot(config=config, name=args.domain).domain
    return config, config.for_domain(domain).require_privacy(), open_store(config)


def _span(partitions: Sequence[str]) -> str:
    if len(partitions) == 1:
        return partitions[0]
    return f"{len(partitions)}: {partitions[0][:10]}..{partitions[-1][-10:]}"


def cmd_ledger(args: argparse.Namespace) -> int:
    """Print a domain's ledger entries with their effective status."""
    from pipelines.privacy.ledger_store import read_ledger

    _config, pconfig, store = _load(args)
    records = read_ledger(config=pconfig, store=store, domain=args.domain)
    if args.json:
        print(json.dumps([{**r.entry.to_json(), "status": r.status, "decision": r.decision, "done": r.done}
                          for r in records], indent=2, sort_keys=True))
        return 0
    rows = [(r.entry.run_id, r.entry.kind, r.status, _span(r.entry.partitions), f"{r.entry.epsilon:.4f}",
             f"{r.entry.noise_multiplier:.4f}", f"{r.entry.sample_rate:.4g}",
             f"{r.entry.steps}" + (f" ({r.done['steps']})" if r.done else ""), r.entry.created_at) for r in records]
    print(f"privacy ledger of {args.domain}: {store.uri(f'{pconfig.ledger_prefix}/{args.domain}/')}")
    print(_table(("run_id", "kind", "status", "partitions", "epsilon", "sigma", "q", "steps (done)", "created_at"),
                 rows) if rows else "(no entries)")
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    """Print each partition's composed spend and remaining budget (curated partitions included)."""
    from pipelines.privacy.reports import budget_report
    from pipelines.publish import list_partitions

    config, pconfig, store = _load(args)
    curated = [] if args.ledger_only else list_partitions(store, config.storage.curated_prefix, args.domain)
    spends = budget_report(config=pconfig, store=store, domain=args.domain, partitions=curated)
    if args.json:
        print(json.dumps({"domain": args.domain, "epsilon": pconfig.epsilon, "delta": pconfig.delta,
                          "accountant": pconfig.accountant, "partitions": [s.as_dict() for s in spends]},
                         indent=2, sort_keys=True))
        return 0
    print(f"{args.domain}: budget ε={pconfig.epsilon:g} per record at δ={pconfig.delta:g} ({pconfig.accountant}); "
          f"weekly share {pconfig.weekly_budget:.4g}, monthly share {pconfig.monthly_budget:.4g}; "
          f"run targets weekly {pconfig.weekly_epsilon:.4g}, monthly {pconfig.monthly_epsilon:.4g}")
    rows = [(s.partition, len(s.runs), f"{s.weekly_epsilon:.4f}/{s.weekly_budget:.4g}",
             f"{s.monthly_epsilon:.4f}/{s.monthly_budget:.4g}", f"{s.epsilon:.4f}/{s.budget:.4g}",
             f"{s.remaining:.4f}", "EXCEEDED" if s.over_budget() else "") for s in spends]
    print(_table(("partition", "runs", "weekly", "monthly", "total", "remaining", ""), rows) if rows
          else "(no partitions)")
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    """Print each group of records (read by the same runs) with its composed ε, and ε per subject."""
    from pipelines.privacy.exposure import record_report, subject_report

    _config, pconfig, store = _load(args)
    groups = record_report(config=pconfig, store=store, domain=args.domain)
    subjects = subject_report(config=pconfig, store=store, domain=args.domain)
    if args.json:
        print(json.dumps({"domain": args.domain, "epsilon": pconfig.epsilon, "delta": pconfig.delta,
                          "groups": [g.as_dict() for g in groups],
                          "subjects": [{"subject": s.subject, "records": s.records, "epsilon": s.epsilon,
                                        "delta": s.delta, "max_records_per_run": s.max_records_per_run}
                                       for s in subjects]}, indent=2, sort_keys=True))
        return 0
    print(f"{args.domain}: ε per record (composed over the runs that read it), budget ε={pconfig.epsilon:g} "
          f"at δ={pconfig.delta:g} ({pconfig.accountant})")
    rows = [(g.group.count, _span(list(g.group.runs)) if g.group.runs else "-", f"{g.epsilon:.4f}",
             "EXCEEDED" if g.over_budget() else "") for g in groups]
    print(_table(("records", "runs", "epsilon", ""), rows) if rows else "(no records charged)")
    if subjects:
        worst = subjects[0]
        print(f"subjects: {len(subjects)}; worst ε={worst.epsilon:.4f} (δ={worst.delta:.3g}) over {worst.records} "
              f"record(s), at most {worst.max_records_per_run} per run")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Void a reservation that was never granted."""
    from pipelines.privacy.ledger import release_budget

    _config, pconfig, store = _load(args)
    if release_budget(config=pconfig, store=store, domain=args.domain, run_id=args.run_id, reason=args.reason,
                      by=args.who):
        print(f"released: run {args.run_id} of {args.domain} is void; its spend no longer counts")
        return 0
    print(f"error: run {args.run_id} of {args.domain} was already granted (it may have trained): its spend stays",
          file=sys.stderr)
    return 2


def cmd_migrate(args: argparse.Namespace) -> int:
    """Give every legacy (per-partition) ledger entry the record set its run read; ``--dry-run`` writes nothing."""
    from pipelines.config import load_config
    from pipelines.forecast import forecast_slots, model_slot
    from pipelines.privacy.migrate import migrate_ledger
    from pipelines.storage import open_store

    config = load_config(getattr(args, "config", None))
    store = open_store(config)
    names = [args.domain] if args.domain else sorted(config.domains) + forecast_slots(config=config)
    report = {}
    for name in names:
        slot = model_slot(config=config, name=name)
        try:
            pconfig = config.for_domain(slot.domain).require_privacy()
        except ValueError:
            if args.domain:
                raise
            continue  # no budget configured: such a domain never trained with DP, so it has no ledger
        steps = migrate_ledger(config=pconfig, store=store, domain=slot.name,
                               curated_prefix=config.storage.curated_prefix,
                               artifacts_prefix=config.artifacts.prefix, data_domain=slot.domain,
                               dry_run=args.dry_run)
        report[slot.name] = [s.as_dict() for s in steps]
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    for name, steps in report.items():
        if not steps:
            continue
        print(f"{name}:")
        print(_table(("run_id", "action", "records", "source"),
                     [(s["run_id"], s["action"], s["records"], s["source"]) for s in steps]))
    if args.dry_run:
        print("dry run: nothing was written")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``privacy`` command: 0 on success, 2 on invalid input, 3 if the object store failed."""
    from pipelines.privacy.ledger_store import LedgerError
    from pipelines.privacy.record_store import RecordSetError
    from pipelines.storage import NotFound, StorageError

    try:
        return args.privacy_func(args)
    except (ValueError, LedgerError, RecordSetError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StorageError, NotFound) as exc:
        print(f"error: object store: {exc}", file=sys.stderr)
        return 3


def _add_commands(sub: argparse._SubParsersAction, *, with_config: bool) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--domain", required=True, help="configured domain, e.g. medical")
        if with_config:
            p.add_argument("--config", default=argparse.SUPPRESS,
                           help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")

    p = sub.add_parser("ledger", help="table of a domain's DP runs (reserved/granted/completed/void)")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(privacy_func=cmd_ledger)
    p = sub.add_parser("budget", help="per-partition ε spent (composed) and remaining")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--ledger-only", action="store_true", help="only partitions some run read (skip listing curated/)")
    p.set_defaults(privacy_func=cmd_budget)
    p = sub.add_parser("records", help="ε per record group (records read by the same runs) and per subject")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(privacy_func=cmd_records)
    p = sub.add_parser("release", help="void a reservation that was never granted (a run that crashed reserving)")
    common(p)
    p.add_argument("--run-id", required=True)
    p.add_argument("--reason", required=True, help="why (kept in the ledger)")
    p.add_argument("--who", default="cli", help="recorded as who released it")
    p.set_defaults(privacy_func=cmd_release)
    p = sub.add_parser("migrate", help="upgrade per-partition ledger entries to per-record charges (idempotent)")
    p.add_argument("--domain", default=None, help="one domain or slot (default: every configured one)")
    if with_config:
        p.add_argument("--config", default=argparse.SUPPRESS,
                       help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")
    p.add_argument("--dry-run", action="store_true", help="report what would be migrated, write nothing")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(privacy_func=cmd_migrate)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``privacy`` on the top-level ``python -m pipelines`` parser (which owns ``--config``)."""
    parser = subparsers.add_parser("privacy", help="privacy ledger and per-partition DP budgets",
                                   description="Read the DP ledger and the budget each partition has left.")
    _add_commands(parser.add_subparsers(dest="privacy_command", required=True, metavar="COMMAND"), with_config=False)
    parser.set_defaults(func=run)
    return parser


def build_parser(prog: str = "python -m pipelines.privacy.cli") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Read the DP ledger and the budget each partition has left.")
    _add_commands(parser.add_subparsers(dest="privacy_command", required=True, metavar="COMMAND"), with_config=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: parse ``argv`` and run one command."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
