"""``python -m pipelines model ...``: inspect, verify, promote and roll back a domain's models; import a base.

Wired into the project CLI with ``pipelines.artifacts.cli.add_parser(subparsers)`` (``pipelines.cli``).
Exit codes: 0 done, 1 refused (gate, failed verification),
2 invalid input, 3 object store unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from pipelines.artifacts.promotion import AuditHook

_AUDIT: list[AuditHook | None] = [None]


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _who(args: argparse.Namespace) -> str:
    if args.who:
        return args.who
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in ("artifact_id", "domain", "task", "version", "kind", "parent", "metrics",
                                         "dp", "data", "code_version", "created_at", "created_by")}


def cmd_model(args: argparse.Namespace) -> int:
    """Run one ``model`` subcommand; returns the exit code."""
    from pipelines.artifacts.manifest import ArtifactCorrupt, ArtifactNotFound
    from pipelines.artifacts.promotion import PromotionConflict, PromotionRefused
    from pipelines.config import ConfigError, load_config
    from pipelines.storage import StorageError, open_store
    from pipelines.train.snapshot import SnapshotError

    try:
        from pipelines.forecast import model_slot

        config = load_config(getattr(args, "config", None))
        model_slot(config=config, name=args.domain)  # a domain, or a forecaster slot such as finance_forecast
        settings = config.artifacts
        store = open_store(config)
        return _COMMANDS[args.model_command](args, config, settings, store)
    except SnapshotError as exc:
        print(f"error: cannot import: {exc}", file=sys.stderr)
        return 2
    except ArtifactCorrupt as exc:
        print(f"error: verification failed: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PromotionRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, ArtifactNotFound, PromotionConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: object store: {exc}", file=sys.stderr)
        return 3


def _ref_or_production(args, settings, store):
    from pipelines.artifacts.promotion import production_ref
    from pipelines.artifacts.store import load_ref

    if args.artifact:
        return load_ref(store, args.domain, args.artifact, prefix=settings.prefix)
    ref = production_ref(store, args.domain, prefix=settings.prefix)
    if ref is None:
        raise ValueError(f"{args.domain} has no production model; name one with --artifact "
                         f"(see `python -m pipelines model list --domain {args.domain}`)")
    return ref


def _show(args, config, settings, store) -> int:
    from pipelines.artifacts.promotion import current_production
    from pipelines.artifacts.store import read_artifact_manifest

    record = current_production(store, args.domain, prefix=settings.prefix)
    if record is None and not args.artifact:
        print(f"{args.domain}: no model in production yet", file=sys.stderr)
        _print({"domain": args.domain, "production": None})
        return 0
    ref = _ref_or_production(args, settings, store)
    _print({"domain": args.domain, "production": record.to_dict() if record else None,
            "artifact": _summary(read_artifact_manifest(store, ref)), "location": store.uri(ref.root)})
    return 0


def _list(args, config, settings, store) -> int:
    from pipelines.artifacts.promotion import current_production
    from pipelines.artifacts.store import list_artifacts

    record = current_production(store, args.domain, prefix=settings.prefix)
    _print([{"artifact_id": r.artifact_id, "version": r.version, "kind": r.kind, "task": r.task,
             "production": bool(record and record.artifact_id == r.artifact_id)}
            for r in list_artifacts(store, args.domain, prefix=settings.prefix)])
    return 0


def _history(args, config, settings, store) -> int:
    from pipelines.artifacts.promotion import promotion_history

    _print([r.to_dict() for r in promotion_history(store, args.domain, prefix=settings.prefix, limit=args.limit)])
    return 0


def _verify(args, config, settings, store) -> int:
    from pipelines.artifacts.store import verify_artifact

    ref = _ref_or_production(args, settings, store)
    manifest = verify_artifact(store, ref)
    print(f"ok: {args.domain} {ref.artifact_id} (version {ref.version}): {len(manifest['files'])} file(s) match "
          f"their sha256")
    return 0


def _audit(config, store) -> AuditHook:
    """The audit writer: the one given to ``add_parser``, else the audit log in the store this command uses."""
    if _AUDIT[0] is not None:
        return _AUDIT[0]
    from pipelines.security.audit import audit_hook

    return audit_hook(store, prefix=config.security.audit_prefix, who="cli")


def _check_approver(args, config, action: str) -> None:
    """Only the configured model approvers (``security.model_approvers``) promote or roll back by hand."""
    from pipelines.access import check_approver

    check_approver(config, who=_who(args), action=action, domain=args.domain)


def _promote(args, config, settings, store) -> int:
    from pipelines.artifacts.gate import force_gate
    from pipelines.artifacts.promotion import evaluate_candidate, promote
    from pipelines.artifacts.store import load_ref

    _check_approver(args, config, "promote")
    ref = load_ref(store, args.domain, args.artifact, prefix=settings.prefix)
    if args.force:
        decision = force_gate(reason=args.why, metric=args.metric or "")
    else:
        max_drop = args.max_drop if args.max_drop is not None else config.for_domain(args.domain).max_drop
        decision = evaluate_candidate(store, args.domain, ref, max_drop=max_drop, metric=args.metric,
                                      higher_is_better=args.higher_is_better, prefix=settings.prefix)
        if not decision.passed:
            _print({"gate": decision.to_dict()})
            print(f"error: gate refused {ref.artifact_id}: {decision.reason}; production unchanged "
                  "(use --force with --why to override)", file=sys.stderr)
            return 1
    record = promote(store, args.domain, ref, gate=decision, who=_who(args), why=args.why,
                     prefix=settings.prefix, audit=_audit(config, store))
    _print(record.to_dict())
    return 0


def _rollback(args, config, settings, store) -> int:
    from pipelines.artifacts.promotion import rollback

    _check_approver(args, config, "rollback")
    record = rollback(store, args.domain, to_artifact_id=args.to, who=_who(args), why=args.why,
                      prefix=settings.prefix, audit=_audit(config, store))
    _print(record.to_dict())
    return 0


def _import_base(args, config, settings, store) -> int:
    from pipelines.finetune.base import import_domain_base

    source = args.source
    if not source.startswith("s3://") and not os.path.isdir(source):
        raise ValueError(f"--from {source}: not a folder; give the snapshot folder (config.json, *.safetensors, "
                         "tokenizer) or s3://bucket/prefix")
    _print(import_domain_base(config=config, store=store, domain=args.domain, source=source, who=_who(args),
                              revision=args.revision, licence=args.licence))
    return 0


_COMMANDS = {"show": _show, "list": _list, "history": _history, "verify": _verify, "promote": _promote,
             "rollback": _rollback,
             "import-base": _import_base}


def add_parser(subparsers: Any, *, audit: AuditHook | None = None) -> argparse.ArgumentParser:
    """Register ``model`` and its subcommands on a top-level ``add_subparsers()`` object.

    Args:
        subparsers: the top-level parser's subparsers.
        audit: called with every promotion/rollback record (e.g. the security stage's audit writer).

    Returns:
        The ``model`` parser.
    """
    _AUDIT[0] = audit
    parser = subparsers.add_parser(
        "model", help="models: show | list | history | verify | promote | rollback | import-base",
        description="Inspect a domain's model artifacts, verify them, and move the production pointer.")
    sub = parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--domain", required=True, help="configured domain")
        p.set_defaults(func=cmd_model)
        return p

    p = command("show", "the production record and the manifest of production (or --artifact)")
    p.add_argument("--artifact", help="artifact id (default: production)")
    command("list", "complete artifacts of the domain, oldest first")
    p = command("history", "promotion and rollback records, newest first")
    p.add_argument("--limit", type=int, help="at most this many records")
    p = command("verify", "re-hash every file of an artifact in the store against its manifest")
    p.add_argument("--artifact", help="artifact id (default: production)")
    p = command("promote", "make an artifact production after the evaluation gate")
    p.add_argument("--artifact", required=True, help="artifact id to promote")
    p.add_argument("--why", required=True, help="reason, kept in the record and the audit log")
    p.add_argument("--who", help="recorded as who promoted (default: $USER)")
    p.add_argument("--force", action="store_true", help="skip the gate (recorded as forced)")
    p.add_argument("--metric", help="gate metric (default: macro_f1 / perplexity / mae by task, as pipelines.train)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--higher-is-better", dest="higher_is_better", action="store_true", default=None)
    direction.add_argument("--lower-is-better", dest="higher_is_better", action="store_false")
    p.add_argument("--max-drop", type=float, help="allowed relative drop (default: domains.<d>.training.max_drop "
                                                  "or artifacts.max_drop)")
    p = command("rollback", "put an earlier production artifact back (new record)")
    p.add_argument("--to", help="artifact id (default: the previous distinct production artifact)")
    p.add_argument("--why", required=True, help="reason, kept in the record and the audit log")
    p.add_argument("--who", help="recorded as who rolled back (default: $USER)")
    p = sub.add_parser(
        "import-base", help="import a pretrained Hugging Face snapshot as the domain's base model",
        description="Import a pretrained transformers snapshot (config.json, *.safetensors weights, tokenizer; a chat "
                    "template for causal LMs) as the domain's base model: the start of its DP fine-tunes. The "
                    "snapshot is checked first: pickled weights (*.bin, *.pt), custom code (*.py, auto_map), an "
                    "architecture transformers does not ship, the wrong kind of model for the domain's task "
                    "(encoder for classification, decoder for causal_lm) and a training.method the architecture "
                    "cannot be trained with under DP (e.g. full on mixture-of-experts or tied embeddings: use lora) "
                    "are refused with the reason. The artifact records the source, revision, licence and every "
                    "file's sha256, and is promoted as the domain's base (not served).",
        epilog="example: python -m pipelines model import-base --domain customer_service "
               "--from /models/Qwen2.5-0.5B-Instruct --revision 7ae557604adf67be50417f59c2c2f167def9a775 "
               "--licence apache-2.0")
    p.add_argument("--domain", required=True, help="configured domain (classification or causal_lm)")
    p.add_argument("--from", dest="source", required=True, metavar="DIR_OR_S3_PREFIX",
                   help="snapshot folder, or s3://bucket/prefix of its files in the object store")
    p.add_argument("--revision", help="the snapshot's revision (e.g. the hub commit), recorded in the manifest")
    p.add_argument("--licence", help="licence recorded in the manifest (default: first line of its LICENSE file)")
    p.add_argument("--who", help="recorded as who imported it (default: $USER)")
    p.set_defaults(func=cmd_model)
    return parser
