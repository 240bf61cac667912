"""``label train-sample``: train the labellers from the bundled data and print held-out metrics.

Wired as ``python -m pipelines label ...``; runs on its own as ``python -m pipelines.label.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def build_parser(prog: str = "python -m pipelines label") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train and measure the auto-labellers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train-sample", help="train the English (legal, medical, finance) and Chinese "
                                            "(product_reviews) labellers offline and print held-out metrics")
    p.add_argument("--out", help="save each labeller to OUT/<domain>/")
    p.add_argument("--seed", type=int, default=20261004)
    p.add_argument("--domain", action="append", help="English domain to train (repeatable; default: all three)")
    p.add_argument("--no-chinese", action="store_true", help="skip the Chinese labeller (~2-4 CPU minutes)")
    p.add_argument("--quick", action="store_true", help="tiny models, seconds: a smoke test, not a measurement")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; exit 0 on success, 2 on invalid input."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything this trains on ships in installed packages
    from dataclasses import replace

    from pipelines.label.train import SampleTrainingConfig, quick_config, train_from_sample

    args = build_parser().parse_args(argv)
    try:
        config = quick_config() if args.quick else SampleTrainingConfig()
        if args.domain:
            config = replace(config, english_domains=tuple(args.domain))
        if args.no_chinese:
            config = replace(config, chinese=False)
        results = train_from_sample(config=config, seed=args.seed, out_dir=args.out)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
