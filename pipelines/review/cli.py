"""``review export|import``: hand a queue to reviewers and take their labels back.

Wired as ``python -m pipelines review ...``; runs on its own as ``python -m pipelines.review.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.storage import LocalObjectStore, NotFound, ObjectStore, StorageError


def _store(args: argparse.Namespace) -> ObjectStore:
    if args.root:
        return LocalObjectStore(args.root)
    from pipelines.config import load_config
    from pipelines.storage import open_store

    return open_store(load_config(args.config))


def build_parser(prog: str = "python -m pipelines review") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Export a partition's review queue for reviewers and import their labels.",
        epilog="Queue keys look like review/<domain>/<interval>/queue-<version>.jsonl.")
    parser.add_argument("--config", help="config file (default: $PIPELINE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("--root", help="use this local folder as the object store instead of the configured one")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("export", help="write a queue to a .csv or .jsonl file for reviewers")
    p.add_argument("--queue", required=True, help="queue key")
    p.add_argument("--out", required=True, help="file to write (.csv or .jsonl)")
    p = sub.add_parser("import", help="validate a reviewed file and store it as the next reviews-<n>.jsonl")
    p.add_argument("--queue", required=True, help="queue key the file was exported from")
    p.add_argument("--in", dest="in_path", required=True, help="the reviewed .csv or .jsonl file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``export`` or ``import``; exit 0 on success, 2 on invalid input, 3 on a store error."""
    from pipelines.review.queue import export_queue
    from pipelines.review.reviews import ReviewImportError, import_reviews

    args = build_parser().parse_args(argv)
    try:
        store = _store(args)
        if args.command == "export":
            n = export_queue(store, args.queue, args.out)
            print(json.dumps({"queue": args.queue, "out": args.out, "rows": n}))
        else:
            print(json.dumps(import_reviews(store, args.queue, args.in_path).to_dict()))
        return 0
    except ReviewImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"error: not found: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: object store: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
