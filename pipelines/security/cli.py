"""``python -m pipelines security ...``: keys, rotation, crypto-shredding, erasure, audit log, thresholds.

Wire with ``pipelines.security.cli.add_parser(subparsers)``; runs on its own as
``python -m pipelines.security.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import sys


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def _context(args: argparse.Namespace):
    from pipelines.config import load_config
    from pipelines.storage import open_store

    config = load_config(getattr(args, "config", None))
    return config, config.security, open_store(config.storage)


def _encrypted(args: argparse.Namespace):
    from pipelines.security.envelope import encrypted_store_for
    from pipelines.security.keyring import Keyring

    config, security, raw = _context(args)
    ring = Keyring.load(security.keyring_file)
    return config, security, encrypted_store_for(raw, security, ring)


def _store(args: argparse.Namespace):
    from pipelines.security.envelope import wrap_store

    config, security, raw = _context(args)
    return config, security, wrap_store(raw, security)


def cmd_init_keyring(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.security.keyring import Keyring

    security = load_config(getattr(args, "config", None)).security
    ring = Keyring.create(args.path or security.keyring_file)
    _print({"keyring": str(ring.path), "active": ring.active_id, "mode": "0600"})
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from pipelines.security.audit import audit_hook
    from pipelines.security.rotation import rotate_kek

    _config, security, store = _encrypted(args)
    result = rotate_kek(store, full=args.full, retire_old=args.retire_old, who=args.who, why=args.why,
                        audit=audit_hook(store.inner, prefix=security.audit_prefix))
    _print(result.to_dict())
    return 1 if result.errors else 0


def cmd_key_age(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.security.keyring import Keyring
    from pipelines.security.rotation import check_kek_age

    config = load_config(getattr(args, "config", None))
    security = config.security
    status = check_kek_age(Keyring.load(security.keyring_file), max_age_days=security.kek_max_age_days,
                           alerts=config.alerts)
    _print(status.to_dict())
    return 1 if status.too_old else 0


def cmd_shred(args: argparse.Namespace) -> int:
    from pipelines.partition import Interval
    from pipelines.security.audit import write_audit
    from pipelines.security.envelope import shred_partition

    config, security, store = _encrypted(args)
    config.domain(args.domain)
    scope = f"{config.storage.curated_prefix}/{args.domain}/{Interval.parse(args.interval).name}"
    tombstone = shred_partition(store, scope=scope, who=args.who, why=args.why)
    key = write_audit(store.inner, action="crypto_shred", who=args.who, why=args.why, what=scope,
                      details={"key_ids": tombstone["key_ids"]}, prefix=security.audit_prefix)
    _print({**tombstone, "audit": key})
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from pipelines.security.purge import purge_record

    config, security, store = _store(args)
    result = purge_record(config=config, store=store, domain=args.domain, record_id=args.id,
                          text_sha256=args.text_sha256, subject_id=args.subject_id, who=args.who, why=args.why,
                          include_copies=not args.no_copies, audit_prefix=security.audit_prefix)
    _print(result.to_dict())
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    from pipelines.security.audit import read_audit

    _config, security, store = _context(args)
    _print(read_audit(store, action=args.action, who=args.who, since=args.since, until=args.until,
                      prefix=security.audit_prefix))
    return 0


def cmd_audit_prune(args: argparse.Namespace) -> int:
    from pipelines.security.audit import prune_audit

    _config, security, store = _context(args)
    deleted = prune_audit(store, older_than_days=args.older_than_days, prefix=security.audit_prefix,
                          retention_days=security.audit_retention_days)
    _print({"deleted": deleted})
    return 0


def cmd_thresholds(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.monitor import Thresholds, check_thresholds

    config = load_config(getattr(args, "config", None))
    limits = config.thresholds  # ops.gpu_temperature_c, ops.accuracy_drop, serving.p95_alert_ms unless given
    breaches = check_thresholds(alerts=config.alerts, thresholds=Thresholds(
        gpu_temperature_c=limits.gpu_temperature_c if args.max_gpu_c is None else args.max_gpu_c,
        accuracy_drop=limits.accuracy_drop if args.max_accuracy_drop is None else args.max_accuracy_drop,
        api_p95_ms=limits.api_p95_ms if args.max_p95_ms is None else args.max_p95_ms),
        baseline_accuracy=args.baseline_accuracy, accuracy=args.accuracy, api_p95_ms=args.p95_ms, where=args.where)
    _print([b.to_dict() for b in breaches])
    return 1 if breaches else 0


def _guard(func):
    """Known user mistakes end with ``error: ...`` and exit 2, never a traceback."""
    def run(args: argparse.Namespace) -> int:
        from pipelines.config import ConfigError
        from pipelines.security.audit import AuditError
        from pipelines.security.envelope import DecryptionError
        from pipelines.security.keyring import KeyringError
        from pipelines.security.purge import PurgeError

        try:
            return func(args)
        except (ConfigError, KeyringError, AuditError, PurgeError, DecryptionError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``security`` and its commands on the top-level ``python -m pipelines`` parser."""
    parser = subparsers.add_parser("security", help="encryption keys, rotation, crypto-shredding, erasure, audit log",
                                   description="Encryption at rest (envelope AES-256-GCM), KEK rotation, "
                                               "crypto-shredding, record erasure, the audit log, alert thresholds.")
    sub = parser.add_subparsers(dest="security_command", required=True, metavar="COMMAND")

    p = sub.add_parser("init-keyring", help="create the KEK keyring file (0600) with one key")
    p.add_argument("--path", help="keyring file (default: security.keyring_path)")
    p.set_defaults(func=_guard(cmd_init_keyring))

    p = sub.add_parser("rotate-kek", help="add a new active KEK and re-wrap (or --full re-encrypt) every key")
    p.add_argument("--full", action="store_true", help="re-encrypt every object with fresh data keys")
    p.add_argument("--retire-old", action="store_true", help="destroy the old KEKs when every object moved")
    p.add_argument("--who", default="cli")
    p.add_argument("--why", default="scheduled KEK rotation")
    p.set_defaults(func=_guard(cmd_rotate))

    p = sub.add_parser("key-age", help="alert when the active KEK is older than security.kek_max_age_days")
    p.set_defaults(func=_guard(cmd_key_age))

    p = sub.add_parser("shred", help="crypto-shred one curated partition (destroy its data key)")
    p.add_argument("--domain", required=True)
    p.add_argument("--interval", required=True, help="START_END, e.g. 2026-10-04_2026-10-11")
    p.add_argument("--who", required=True)
    p.add_argument("--why", required=True)
    p.set_defaults(func=_guard(cmd_shred))

    p = sub.add_parser("purge", help="erase one record everywhere (landing, curated, queue, index)")
    p.add_argument("--domain", required=True)
    p.add_argument("--id", help="the curated record id")
    p.add_argument("--text-sha256", help="the curated content_sha256")
    p.add_argument("--subject-id", help="a subject_id as given at ingestion: every record of that subject")
    p.add_argument("--who", required=True)
    p.add_argument("--why", required=True, help="reason or request reference (audit log)")
    p.add_argument("--no-copies", action="store_true", help="keep records dropped as duplicates of the same text")
    p.set_defaults(func=_guard(cmd_purge))

    p = sub.add_parser("audit", help="list audit entries")
    p.add_argument("--action", action="append")
    p.add_argument("--who")
    p.add_argument("--since", help="ISO date or time")
    p.add_argument("--until", help="ISO date or time")
    p.set_defaults(func=_guard(cmd_audit_list))

    p = sub.add_parser("audit-prune", help="delete audit entries older than N days (N >= retention)")
    p.add_argument("--older-than-days", type=int, required=True)
    p.set_defaults(func=_guard(cmd_audit_prune))

    p = sub.add_parser("thresholds", help="alert on GPU temperature (NVML), accuracy drop, API p95")
    p.add_argument("--accuracy", type=float)
    p.add_argument("--baseline-accuracy", type=float)
    p.add_argument("--p95-ms", type=float)
    p.add_argument("--max-gpu-c", type=float, help="default: ops.gpu_temperature_c")
    p.add_argument("--max-accuracy-drop", type=float, help="default: ops.accuracy_drop")
    p.add_argument("--max-p95-ms", type=float, help="default: serving.p95_alert_ms")
    p.add_argument("--where", default="")
    p.set_defaults(func=_guard(cmd_thresholds))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command standalone (``python -m pipelines.security.cli``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.security.cli")
    parser.add_argument("--config")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
