"""``python -m pipelines.pretrain --out DIR --labels negative positive [--exclude FILE]``: build the public base.

The base is :func:`pipelines.pretrain.encoder.build_public_encoder` on
:func:`pipelines.pretrain.corpora.public_chinese`;
``--exclude`` names a text file (one record per line) whose lines are kept out of the pretraining text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.pretrain.corpora import public_chinese
from pipelines.pretrain.encoder import SHAPES, build_public_encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (new or empty)")
    parser.add_argument("--labels", nargs="+", required=True, help="class names in logit order")
    parser.add_argument("--size", choices=sorted(SHAPES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--exclude", type=Path, help="texts (one per line) that must not be pretrained on")
    args = parser.parse_args(argv)
    banned = args.exclude.read_text(encoding="utf-8").splitlines() if args.exclude else []
    folder = build_public_encoder(corpora=public_chinese(exclude_texts=banned), out_dir=args.out, labels=args.labels,
                                  size=args.size, seed=args.seed, max_length=args.max_length,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
