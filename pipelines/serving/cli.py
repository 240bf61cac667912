"""``python -m pipelines serve ...``: run the model server, or train and publish its output screen.

Wire into ``pipelines/cli.py`` with ``pipelines.serving.cli.add_parser(subparsers)``; also runs on its
own as ``python -m pipelines.serving ...`` (what ``scripts/serve.sh`` calls).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``serve`` command (subcommands ``run``, ``train-screen``) on a subparsers object."""
    parser = subparsers.add_parser("serve", help="the model serving service", description=__doc__.split("\n")[0])
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="pipeline config (default $PIPELINE_CONFIG or config/pipeline.yaml)")
    sub = parser.add_subparsers(dest="serve_command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="serve the production models over HTTP until stopped (SIGINT/SIGTERM)")
    run.add_argument("--host", help="overrides serving.host")
    run.add_argument("--port", type=int, help="overrides serving.port")
    run.add_argument("--domain", action="append", help="serve only this domain (repeatable)")
    run.add_argument("--int8", action="store_true", default=None, help="INT8 dynamic quantization (serving.quantize_int8)")
    run.add_argument("--max-batch-size", type=int, help="overrides serving.max_batch_size")
    run.add_argument("--max-wait-ms", type=float, help="overrides serving.max_wait_ms")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.set_defaults(func=cmd_run)
    screen = sub.add_parser("train-screen", help="train the output-screen classifier (safe/unsafe) from the "
                                                 "bundled data, print held-out metrics, optionally publish it")
    screen.add_argument("--n", type=int, default=4000, help="safe texts drawn (each also gives an unsafe one)")
    screen.add_argument("--seed", type=int, default=20261004)
    screen.add_argument("--out", help="save the labeller to this folder")
    screen.add_argument("--publish", action="store_true", help="publish it as models/labellers/<serving.output_screen>")
    screen.add_argument("--if-missing", action="store_true",
                        help="with --publish: do nothing when that labeller is published already (scripts/serve.sh)")
    screen.set_defaults(func=cmd_train_screen)


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.config import ConfigError, load_config
    from pipelines.serving import build_service, override_serving
    from pipelines.serving.app import build_server
    from pipelines.serving.store import open_serving_store
    from pipelines.storage import StorageError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = load_config(args.config)
        serving = override_serving(config=config, host=args.host, port=args.port,
                                   domains=tuple(args.domain) if args.domain else None, quantize_int8=args.int8,
                                   max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms)
        service = build_service(config=config, store=open_serving_store(config, serving), serving=serving)
        service.start()
    except (ConfigError, StorageError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if serving.tls else "http"
    print(f"serving {', '.join(f'{d}={s.version}' for d, s in sorted(service.served.items())) or 'nothing yet'} "
          f"on {scheme}://{serving.host}:{serving.port}", file=sys.stderr, flush=True)
    try:
        build_server(service, log_level=args.log_level).run()
    finally:
        service.stop()
    return 0


def cmd_train_screen(args: argparse.Namespace) -> int:
    import tempfile

    from pipelines.config import ConfigError, load_config
    from pipelines.serving.screening import train_output_screen
    from pipelines.storage import StorageError, open_store

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = load_config(args.config)
        serving = config.serving
        if args.publish and not serving.output_screen:
            raise ConfigError("serving.output_screen is empty: name the labeller to publish")
        if args.if_missing and not args.publish:
            raise ConfigError("--if-missing goes with --publish")
        if args.if_missing:
            from pipelines.label.registry import current_labeller

            pointer = current_labeller(open_store(config), serving.output_screen)
            if pointer is not None:
                print(json.dumps({"published": f"models/labellers/{serving.output_screen}/{pointer['version']}",
                                  "trained": False}, indent=2, sort_keys=True))
                return 0
        labeller, metrics = train_output_screen(n=args.n, seed=args.seed)
        out = args.out or (tempfile.mkdtemp(prefix="output-screen-") if args.publish else None)
        if out:
            labeller.save(out)
        result = {"version": labeller.version, "labels": list(labeller.labels), "metrics": metrics, "saved": out}
        if args.publish:
            from pipelines.label.registry import publish_labeller

            pointer = publish_labeller(open_store(config), out, name=serving.output_screen)
            result["published"] = f"models/labellers/{serving.output_screen}/{pointer['version']}"
    except (ConfigError, StorageError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.serving", description=__doc__.split("\n")[0])
    _fill(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
