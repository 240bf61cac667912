"""Auto-labelling throughput on CPU, before and after (issue 15, part 5), measured side by side in one run.

Trains the English legal labeller (frozen MiniLM + linear head, seconds) and saves it; "before" loads it
with ``pipelines/label/model.py`` of a git revision (``--before``, default ``main``), "after" with the
working tree: texts clipped to what the model reads before tokenizing, and dynamic INT8 Linear layers
when they agree with the float model on >= 99 % of the sample's labelled texts (else float). Times
``predict`` on documents of ~7.5 KB (sample texts joined, the guide's legal size) and on the sample's
short texts; records/s is the median of ``--repeats`` runs.

Usage (from the project root):
    .venv/bin/python benchmarks/label_throughput.py [--docs 64] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.label import load_labeller  # noqa: E402
from pipelines.label.data import distinct_labelled, sample_records  # noqa: E402
from pipelines.label.train import SampleTrainingConfig, train_english  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "label_throughput.json"


def load_before(revision: str) -> types.ModuleType | None:
    try:
        source = subprocess.run(["git", "show", f"{revision}:pipelines/label/model.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("label_model_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{revision}:pipelines/label/model.py", "exec"), module.__dict__)
    return module


def rate(labeller, texts: list[str], batch_size: int, repeats: int) -> tuple[float, list]:
    labeller.predict(texts[:batch_size], batch_size=batch_size)  # warm-up
    rates, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = labeller.predict(texts, batch_size=batch_size)
        rates.append(len(texts) / (time.perf_counter() - started))
    return round(statistics.median(rates), 1), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--doc-bytes", type=int, default=7500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", default="main")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    texts = list(distinct_labelled(sample_records("legal")).texts)
    docs, i = [], 0
    while len(docs) < args.docs:
        doc = ""
        while len(doc) < args.doc_bytes:
            doc += texts[i % len(texts)] + " "
            i += 1
        docs.append(doc)
    results: dict = {"config": vars(args), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        labeller, _ = train_english("legal", config=SampleTrainingConfig(group_holdout=0.0, chinese=False), seed=20261004)
        labeller.save(Path(tmp) / "legal")
        after = load_labeller(Path(tmp) / "legal")
        after.config = replace(after.config, num_threads=args.threads)
        int8 = after.use_int8(texts, batch_size=args.batch_size)
        results["int8"] = int8
        old = load_before(args.before)
        impls = ([("before", old.load_labeller(Path(tmp) / "legal"))] if old else []) + [("after", after)]
        labels = {}
        for name, model in impls:
            model.config = replace(model.config, num_threads=args.threads)
            for kind, data in (("docs_7.5kb", docs), ("sample_texts", texts)):
                per_s, out = rate(model, data, args.batch_size, args.repeats)
                labels[(name, kind)] = [label for label, _ in out]
                results["runs"].append({"impl": name, "texts": kind, "n": len(data), "records_per_s": per_s,
                                        "batch_size": args.batch_size, "threads": args.threads})
                print(f"{name:6s} {kind:12s} {per_s:7.1f} records/s", flush=True)
        again = [label for label, _ in after.predict(docs, batch_size=args.batch_size)]
        results["deterministic"] = again == labels[("after", "docs_7.5kb")]
        if old:
            for kind in ("docs_7.5kb", "sample_texts"):
                same = sum(a == b for a, b in zip(labels[("before", kind)], labels[("after", kind)]))
                results.setdefault("label_agreement_before_after", {})[kind] = round(same / len(labels[("after", kind)]), 4)
            rates = {(r["impl"], r["texts"]): r["records_per_s"] for r in results["runs"]}
            results["speedup_docs"] = round(rates[("after", "docs_7.5kb")] / rates[("before", "docs_7.5kb")], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k] for k in results if k not in ("runs", "config")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
