"""``python -m pipelines ops ...``: the on-call commands of docs/RUNBOOK.md.

``ops quarantine list | show | release`` and ``ops rerun``. Wired into the project CLI
with ``pipelines.ops_cli.add_parser(subparsers)`` (``pipelines.cli``). Exit codes: 0 done, 1 the rerun's validation failed
(partition not published), 2 invalid input (unknown domain, interval or id), 3 object store unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _who(args: argparse.Namespace) -> str:
    if getattr(args, "who", None):
        return args.who
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def _context(args: argparse.Namespace):
    from pipelines.config import load_config
    from pipelines.storage import open_store

    config = load_config(getattr(args, "config", None))
    # open_store(config) wraps the store in envelope encryption when security.enabled: quarantine/ is encrypted.
    return config, open_store(config)


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    """Counts by reason and the entries of one partition (or every partition of the domain)."""
    from pipelines.ops import list_quarantine

    config, store = _context(args)
    sets = list_quarantine(config=config, store=store, domain=args.domain, interval=args.interval, reason=args.reason)
    out = []
    for found in sets:
        item = found.to_dict()
        if args.counts_only:
            item.pop("records")
        out.append(item)
    _print(out)
    return 0


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    """One entry with the original record from landing and its release, if any."""
    from pipelines.ops import show_quarantined

    config, store = _context(args)
    _print(show_quarantined(config=config, store=store, domain=args.domain, interval=args.interval,
                            record_id=args.id))
    return 0


def _corrected(path: str | None) -> dict | None:
    from pipelines.ops import OpsError

    if path is None:
        return None
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OpsError(f"--from-file {path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OpsError(f"--from-file {path}: not one JSON object ({exc})") from None
    if not isinstance(value, dict):
        raise OpsError(f"--from-file {path}: expected one JSON object, got {type(value).__name__}")
    return value


def cmd_quarantine_release(args: argparse.Namespace) -> int:
    """Land the records again (create-only), mark them released, audit; the next rerun governs them."""
    from pipelines.ops import release_quarantined

    config, store = _context(args)
    result = release_quarantined(config=config, store=store, domain=args.domain, interval=args.interval,
                                 ids=args.id, why=args.why, who=_who(args), corrected=_corrected(args.from_file),
                                 audit_prefix=config.security.audit_prefix)
    _print(result.to_dict())
    print(f"released {len(result.released)} record(s); now rerun the partition: {result.next_step}", file=sys.stderr)
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    """Alias of ``python -m pipelines ingest --interval I --domain D`` for one partition (safe to repeat)."""
    from pipelines.ops import rerun_partition
    from pipelines.weekly import InputsRemoved, ValidationFailed

    from pipelines.partition import Interval

    interval = Interval.parse(args.interval)  # a typo fails before any work
    config, store = _context(args)
    config.domain(args.domain)
    print(f"[rerun] {args.domain} {interval.name} ...", file=sys.stderr, flush=True)
    try:
        result = rerun_partition(config=config, store=store, domain=args.domain, interval=interval,
                                 who=_who(args), run_key=args.run_key)
    except (ValidationFailed, InputsRemoved) as exc:  # refused: the message says what to run
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print(result)
    return 0


def _guard(func):
    """Known mistakes end with ``error: ...`` (exit 2; 3 for the object store), never a traceback."""
    def run(args: argparse.Namespace) -> int:
        from pipelines.config import ConfigError
        from pipelines.security.audit import AuditError
        from pipelines.storage import NotFound, StorageError

        try:
            return func(args)
        except (ConfigError, AuditError, ValueError) as exc:  # OpsError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (StorageError, NotFound) as exc:
            print(f"error: object store: {exc}", file=sys.stderr)
            return 3
    return run


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``ops`` and its commands on the top-level ``python -m pipelines`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` object.

    Returns:
        The ``ops`` parser.
    """
    parser = subparsers.add_parser(
        "ops", help="on call: quarantine list | show | release, rerun one partition (docs/RUNBOOK.md)",
        description="On-call commands (docs/RUNBOOK.md). Released records go back to landing and through every "
                    "governance step on the next rerun: nothing bypasses governance.")
    sub = parser.add_subparsers(dest="ops_command", required=True, metavar="COMMAND")

    def partition_args(p: argparse.ArgumentParser, *, interval_required: bool = True) -> None:
        p.add_argument("--domain", required=True, help="configured domain, or 'feedback' (unrouted feedback)")
        p.add_argument("--interval", required=interval_required, help="START_END, e.g. 2026-10-04_2026-10-11")

    quarantine = sub.add_parser("quarantine", help="inspect and release quarantined records",
                                description="Inspect and release quarantined records.")
    qsub = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="COMMAND")
    p = qsub.add_parser("list", help="counts by reason and the entries with their reason and id")
    partition_args(p, interval_required=False)
    p.add_argument("--reason", help="only this reason, e.g. schema.label.type or clean.language.zh")
    p.add_argument("--counts-only", action="store_true", help="counts by reason, no entries")
    p.set_defaults(func=_guard(cmd_quarantine_list))

    p = qsub.add_parser("show", help="one entry, the original record from landing, its release")
    partition_args(p)
    p.add_argument("--id", required=True, help="id from `ops quarantine list` (or the entry's source_uri)")
    p.set_defaults(func=_guard(cmd_quarantine_show))

    p = qsub.add_parser("release", help="land records again (create-only) so the next rerun governs them anew",
                        description="Write each record (or the corrected one, --from-file) to a new create-only "
                                    "landing file released-<uuid>.jsonl in its arrival-date folder, mark it "
                                    "released and append to the audit log. Then rerun the partition.")
    partition_args(p)
    p.add_argument("--id", action="append", required=True, help="entry id (repeatable)")
    p.add_argument("--why", required=True, help="reason (audit log)")
    p.add_argument("--who", help="who releases (default: $USER)")
    p.add_argument("--from-file", help="a corrected record (one JSON object) to land instead of the original; "
                                       "only with one --id")
    p.set_defaults(func=_guard(cmd_quarantine_release))

    p = sub.add_parser("rerun", help="rerun one partition in-process (= python -m pipelines ingest --domain D "
                                     "--interval I); unchanged inputs give the same version",
                       description="Rerun one partition through every step in this process. Unchanged inputs "
                                   "compute the same version and write no new commit.")
    partition_args(p)
    p.add_argument("--who", help="recorded in the commit record (default: $USER)")
    p.add_argument("--run-key", default="ops", help="staging namespace (default: ops)")
    p.set_defaults(func=_guard(cmd_rerun))
    return parser
