"""``python -m pipelines train ...``: build base models, run DP training from a spec, write sample series.

Wired into ``pipelines/cli.py`` with :func:`add_parser`; ``python -m pipelines.train --spec FILE`` is the
same ``run`` command on its own (what a GPU worker or a DAG task executes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _known_errors() -> tuple[type[BaseException], ...]:
    from pipelines.config import ConfigError
    from pipelines.train.data import DataError
    from pipelines.modeling import ModelFolderError
    from pipelines.train.spec import TrainError

    return (TrainError, DataError, ModelFolderError, ConfigError, FileNotFoundError, FileExistsError, ValueError)


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``fit`` from a JSON spec file; print the TrainResult as JSON."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipelines.train.spec import TrainError, TrainSpec
    from pipelines.train.trainer import train

    try:
        try:
            with open(args.spec, encoding="utf-8") as fh:
                values = json.load(fh)
        except json.JSONDecodeError as exc:
            raise TrainError(f"{args.spec}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(values, dict):
            raise TrainError(f"{args.spec}: expected a JSON object of TrainSpec fields")
        if args.log_every:
            values["log_every"] = args.log_every
        result = train(TrainSpec.from_dict(values))
    except _known_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print(result.to_dict())
    return 0


def cmd_build_base(args: argparse.Namespace) -> int:
    """Build a base model from a JSONL of examples (texts, labels) or from generated series."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipelines.train.data import example_text, read_jsonl
    from pipelines.train.models import build_base_model, make_sample_series

    try:
        labels: list[str] = []
        if args.task == "forecast":
            items: list[Any] = make_sample_series(args.seed, args.series)
        else:
            if not args.examples:
                raise ValueError(f"--examples JSONL is required for task {args.task}")
            examples = read_jsonl(args.examples)
            items = [example_text(e) for e in examples]
            labels = args.labels.split(",") if args.labels else sorted({str(e["label"]) for e in examples
                                                                        if args.task == "classification"})
        folder = build_base_model(task=args.task, texts_or_series=items, out_dir=args.out, labels=labels,
                                  size=args.size, seed=args.seed, base=args.base, max_length=args.max_length)
    except _known_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print({"model_dir": str(folder), "task": args.task, "labels": labels, "size": args.size})
    return 0


def cmd_series(args: argparse.Namespace) -> int:
    """Write the generated sample series as train/eval window JSONL files."""
    from pipelines.train.data import write_jsonl
    from pipelines.train.models import make_sample_series, series_windows

    try:
        train, held = series_windows(make_sample_series(args.seed, args.n), window=args.window,
                                     eval_tail=args.eval_tail)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    _print({"train": str(write_jsonl(os.path.join(args.out, "train.jsonl"), train)), "train_n": len(train),
            "eval": str(write_jsonl(os.path.join(args.out, "eval.jsonl"), held)), "eval_n": len(held)})
    return 0


def _slot_config(args: argparse.Namespace) -> Any | None:
    """The config, or None (after saying why) when ``args.domain`` is neither a configured domain nor a
    forecaster slot (``finance_forecast``)."""
    from pipelines.config import ConfigError, load_config
    from pipelines.forecast import model_slot

    config = load_config(getattr(args, "config", None))
    try:
        model_slot(config=config, name=args.domain)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return config


def cmd_domain(args: argparse.Namespace) -> int:
    import datetime as dt

    from pipelines.finetune import RunRefused, RunRequest, run_domain
    from pipelines.storage import open_store

    config = _slot_config(args)
    if config is None:
        return 2
    run_id = args.run_id or f"{args.kind}-{args.domain}-cli-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    request = RunRequest(domain=args.domain, kind=args.kind, run_id=run_id, epsilon=args.epsilon,
                         dry_run=args.dry_run, requested_by=args.who)
    try:
        result = run_domain(config=config, store=open_store(config), request=request, who=args.who,
                            log_every=args.log_every)
        _print(result.to_dict())
    except RunRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_domain_base(args: argparse.Namespace) -> int:
    from pipelines.finetune import RunRefused, build_domain_base
    from pipelines.storage import open_store

    config = _slot_config(args)
    if config is None:
        return 2
    store = open_store(config)
    if args.if_missing:
        from pipelines.finetune import base_ref

        existing = base_ref(config=config, store=store, domain=args.domain)
        if existing is not None:
            _print({"domain": args.domain, "artifact_id": existing.artifact_id, "root": existing.root, "existing": True})
            return 0
    try:
        _print(build_domain_base(config=config, store=store, domain=args.domain, who=args.who, size=args.size,
                                 seed=args.seed))
    except RunRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="JSON file of TrainSpec fields (model_dir, out_dir, checkpoint_dir, "
                                                 "train_path, eval_path, epochs, noise_multiplier, ...)")
    p.add_argument("--log-every", type=int, default=0, help="log a progress line every N steps (overrides the spec)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` (with ``run``, ``build-base``, ``series``) on the top-level CLI's subparsers."""
    parser = subparsers.add_parser("train", help="DP training: build base models, run a training spec",
                                   description="Differentially private training (Opacus). A run checkpoints every "
                                               "epoch and resumes where it stopped when started again.")
    sub = parser.add_subparsers(dest="train_command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train from a JSON spec (resumes from its checkpoint_dir)")
    _add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("build-base", help="build a random-init (or MiniLM) base model with a local tokenizer")
    p.add_argument("--task", required=True, choices=("classification", "causal_lm", "forecast"))
    p.add_argument("--examples", help="JSONL examples whose texts train the tokenizer (and give the labels)")
    p.add_argument("--labels", help="comma-separated labels in logit order (default: sorted labels of the examples)")
    p.add_argument("--out", required=True, help="new folder for the model")
    p.add_argument("--size", default="small", choices=("tiny", "small"))
    p.add_argument("--base", default="scratch", choices=("scratch", "minilm"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--series", type=int, default=64, help="forecast: number of generated series")
    p.set_defaults(func=cmd_build_base)

    p = sub.add_parser("domain", help="one domain's run: plan + budget check, DP training, gate and promotion",
                       description="What the domain_finetune / monthly_full_retrain DAGs run, in this process (a GPU "
                                   "box). Killed, rerun the same command (same --run-id) to resume from the last "
                                   "epoch checkpoint without spending the budget again.")
    p.add_argument("--domain", required=True)
    p.add_argument("--kind", choices=("weekly", "monthly"), default="weekly",
                   help="weekly: new partitions, from production (minor version); monthly: all data, from the base "
                        "model (major version)")
    p.add_argument("--run-id", help="ledger / checkpoint id (default: <kind>-<domain>-cli-<UTC date>)")
    p.add_argument("--epsilon", type=float, help="this run's target epsilon (default: the domain's per-run target)")
    p.add_argument("--dry-run", action="store_true", help="plan and check the budget only; reserve nothing")
    p.add_argument("--who", default=os.environ.get("USER") or "cli", help="recorded in the ledger and promotion")
    p.add_argument("--log-every", type=int, default=10, help="a progress line every N steps (stderr)")
    p.set_defaults(func=cmd_domain)

    p = sub.add_parser("build-domain-base", help="build a domain's base model from public text and publish it",
                       description="Random-init model of the domain's task with a tokenizer trained on the bundled "
                                   "public sample text, pushed as a base artifact (models/base/<domain>/) and made "
                                   "the domain's current base. Monthly retrains start from it.")
    p.add_argument("--domain", required=True)
    p.add_argument("--size", choices=("tiny", "small"), help="default: training.size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--who", default=os.environ.get("USER") or "cli")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the domain already has a base model")
    p.set_defaults(func=cmd_domain_base)

    p = sub.add_parser("series", help="write generated price-like series as train/eval window JSONL (forecast)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--eval-tail", type=int, default=20)
    p.set_defaults(func=cmd_series)
    return parser


def run_main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.train --spec FILE``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.train",
                                     description="Run one DP training spec; killed, rerun the same command to resume "
                                                 "from the last epoch checkpoint. Progress on stderr, result JSON on "
                                                 "stdout; exit 2 on a bad spec or data.")
    _add_run_arguments(parser)
    return cmd_run(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.train.cli COMMAND ...`` (the ``train`` subcommands without the top-level CLI)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines train")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
