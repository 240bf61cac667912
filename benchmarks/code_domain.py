"""Benchmark the code domain, side by side in one run: scrubbing next to dedup hashing, and constrained next to
unconstrained decoding.

Corpus: the project's own Python files (``pipelines/``, ``tests/``, ``benchmarks/``, ``dags/``: real code of
real shapes), a tenth of them with one planted fake secret of each kind appended (built at runtime). Over the
same texts, each round times, in rotating order:

* dedup hashing: ``pipelines.dedup.normalize.packed_hashes`` (what the weekly dedup step pays per file);
* scrubbing: ``pipelines.code.scrub.scrub_text`` (own detectors, detect-secrets' plugins, verification scan);
* scrubbing without detect-secrets (own detectors only), to show what the maintained detector costs;
* the whole snapshot path: ``parse_snapshot`` of a tar.gz of the corpus (read, classify, scrub, examples,
  MinHash near-duplicates).

Decoding: tiny and small project-built Llama models (random init: the point is the grammar's cost per token,
not what is generated), greedy, the same token budget; tokens/s of the same decode loop without a grammar,
with the JSON grammar and with the Python subset grammar (first attempt only: the retry policy is measured
by the evaluation, not here), each grammar with its mask filled in line (what serving does) and in a worker
thread while the forward runs (``*_overlap``). The modes run side by side per prompt in
rotating order; a round's constraint cost is one minus its constrained over its unconstrained tokens/s, and the
median and range over the rounds are reported. Target: constraints cost <= 10 % of tokens/s.

Usage (from the project root):
    .venv/bin/python benchmarks/code_domain.py                 # writes benchmarks/results/code_domain.json
    .venv/bin/python benchmarks/code_domain.py --only decoding # decoding only; keeps the file's scrubbing part
    .venv/bin/python benchmarks/code_domain.py --repeat 1 --rounds 1 --no-small --out /tmp/cd.json  # smoke test
    python benchmarks/code_domain.py --only decoding --device cuda --out benchmarks/results/code_domain_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "pipelines" / "code"))  # code_fakes.py: fake secrets built at runtime

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from code_fakes import planted, secret_file, snapshot_tar  # noqa: E402

from pipelines.code.config import CodeConfig  # noqa: E402
from pipelines.code.ingest import parse_snapshot  # noqa: E402
from pipelines.code.scrub import ScrubConfig, scrub_text  # noqa: E402
from pipelines.dedup.normalize import packed_hashes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "code_domain.json"


def corpus() -> dict[str, str]:
    files = {}
    for folder in ("pipelines", "tests", "benchmarks", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            files[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
    for i, name in enumerate(sorted(files)[::10]):
        files[name] += "\n\n" + secret_file(planted(seed=i))
    return files


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_scrubbing(files: dict[str, str], repeat: int) -> dict:
    texts = list(files.values())
    size_mb = sum(len(t.encode()) for t in texts) / 1e6
    own_only = ScrubConfig(use_detect_secrets=False)
    archive = snapshot_tar(files)
    stages = {
        "dedup_hashing": lambda: packed_hashes(texts),
        "scrub": lambda: [scrub_text(t) for t in texts],
        "scrub_own_detectors_only": lambda: [scrub_text(t, config=own_only) for t in texts],
        "snapshot_parse": lambda: parse_snapshot(key="landing/code/2026-01-05/project.tar.gz", data=archive,
                                                 config=CodeConfig(max_line_chars=2000)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in stages}
    names = list(stages)
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds[name].append(_time(stages[name]))
    out = {"files": len(texts), "megabytes": round(size_mb, 3)}
    for name, values in seconds.items():
        median = statistics.median(values)
        out[name] = {"seconds": round(median, 4), "files_per_s": round(len(texts) / median, 1),
                     "mb_per_s": round(size_mb / median, 3)}
    out["scrub_vs_dedup"] = round(out["scrub"]["files_per_s"] / out["dedup_hashing"]["files_per_s"], 5)
    leaked = [k for t in (scrub_text(x).text for x in texts) for k, v in planted(seed=0).items() if v in t]
    out["planted_values_left_after_scrub"] = len(leaked)
    return out


# Decoding modes: (grammar, whether the mask fill overlaps the forward in a worker thread). ``json`` and ``python``
# are what serving does (fill in line); ``*_overlap`` the worker-thread fill (``decode(overlap=True)``).
MODES = {"none": ("none", False), "json": ("json", False), "python": ("python", False),
         "json_overlap": ("json", True), "python_overlap": ("python", True)}


def bench_decoding(size: str, tokens: int, rounds: int, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.code.constrained import GrammarCache, decode
    from pipelines.modeling import causal_prompt_ids, stop_token_ids
    from pipelines.train.models import build_base_model

    torch.manual_seed(0)
    texts = list(corpus().values())[:200]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_base_model(task="causal_lm", texts_or_series=[t[:2000] for t in texts], out_dir=Path(tmp) / "m",
                                  size=size, seed=0, max_length=512)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
    stops = stop_token_ids(model, tokenizer)
    vocab = model.get_output_embeddings().weight.shape[0]
    cache = GrammarCache(tokenizer, vocab_size=vocab, stop_ids=stops)
    prompts = ["def add(a, b):\n", "import os\n\nPATH = ", "class A:\n    def f(self):\n"]
    compile_started = time.perf_counter()
    compiled = {p: {"none": None, "json": cache.compiled("json", p), "python": cache.compiled("python", p)}
                for p in prompts}
    compile_seconds = time.perf_counter() - compile_started
    prompt_ids = {p: causal_prompt_ids(tokenizer, p) for p in prompts}
    outputs: dict[str, list[list[int]]] = {}
    for mode, (grammar, overlap) in MODES.items():  # warm-up: first forwards allocate; no mode should pay for them
        outputs[mode] = [decode(model, prompt_ids[p], max_new_tokens=tokens, stop_ids=(), compiled=compiled[p][grammar],
                                cache=cache, overlap=overlap) for p in prompts]
    # Greedy: overlapping the fill must not change a single token.
    identical = all(outputs[f"{g}_overlap"] == outputs[g] for g in ("json", "python"))
    modes = list(MODES)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    costs: dict[str, list[float]] = {m: [] for m in modes if m != "none"}
    for r in range(rounds):
        count = dict.fromkeys(modes, 0)
        seconds = dict.fromkeys(modes, 0.0)
        for i, prompt in enumerate(prompts):  # the modes side by side per prompt, their order rotating
            shift = (r * len(prompts) + i) % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                grammar, overlap = MODES[mode]
                started = time.perf_counter()
                # No stop ids: every mode decodes the full budget unless its grammar terminates.
                out = decode(model, prompt_ids[prompt], max_new_tokens=tokens, stop_ids=(),
                             compiled=compiled[prompt][grammar], cache=cache, overlap=overlap)
                seconds[mode] += time.perf_counter() - started
                count[mode] += len(out)
        for mode in modes:
            rates[mode].append(count[mode] / seconds[mode])
        for mode in costs:  # paired: each round's constrained rate against the same round's unconstrained one
            costs[mode].append(1 - rates[mode][-1] / rates["none"][-1])
    params = sum(p.numel() for p in model.parameters())
    return {"size": size, "parameters": params, "vocab": vocab, "max_new_tokens": tokens, "rounds": rounds,
            "grammar_compile_seconds": round(compile_seconds, 4),
            "tokens_per_s": {m: round(statistics.median(v), 1) for m, v in rates.items()},
            "constraint_cost": {m: round(statistics.median(v), 4) for m, v in costs.items()},
            "constraint_cost_range": {m: [round(min(v), 4), round(max(v), 4)] for m, v in costs.items()},
            # Each mode's best round against the unconstrained best: the least disturbed by a shared machine.
            "constraint_cost_best": {m: round(1 - max(rates[m]) / max(rates["none"]), 4) for m in costs},
            "overlap_tokens_identical": identical, "target_cost": 0.10,
            "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"}


def render(result: dict) -> str:
    """The markdown table benchmarks/README.md carries for the decoding results (a test keeps the two equal)."""
    rows = ["| model | parameters | tokens/s none / JSON / Python | JSON cost: median (range); best | "
            "Python cost: median (range); best | fill overlapped: JSON / Python cost, median; best | grammar compile |",
            "|---|---:|---:|---:|---:|---:|---:|"]

    def pct(value: float) -> str:
        return f"{value * 100:.1f} %"

    for d in result["decoding"]:
        rate, cost, span, best = (d["tokens_per_s"], d["constraint_cost"], d["constraint_cost_range"],
                                  d["constraint_cost_best"])
        rows.append(f"| {d['size']} | {d['parameters']:,} | {rate['none']} / {rate['json']} / {rate['python']} "
                    + "".join(f"| **{pct(cost[g])}** ({pct(span[g][0])} .. {pct(span[g][1])}); {pct(best[g])} "
                              for g in ("json", "python"))
                    + f"| {pct(cost['json_overlap'])} / {pct(cost['python_overlap'])}; "
                      f"{pct(best['json_overlap'])} / {pct(best['python_overlap'])} "
                      f"| {d['grammar_compile_seconds']} s |")
    first = result["decoding"][0]
    machine = result["machine"]
    return "\n".join(rows) + (
        f"\n\nGreedy, {first['max_new_tokens']} new tokens per prompt, tokens/s medians of {first['rounds']} rounds on "
        f"{first['device']} ({machine['cpus']} CPUs, {machine['torch_threads']} torch thread); a cost is one minus a "
        f"round's constrained over the same round's unconstrained tokens/s, median (min .. max) over the rounds; "
        f"best: a mode's best round over the unconstrained best round; "
        f"overlapped and in-line fills gave identical tokens: "
        f"{all(d['overlap_tokens_identical'] for d in result['decoding'])}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="scrubbing rounds")
    parser.add_argument("--rounds", type=int, default=9, help="decoding rounds")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per prompt")
    parser.add_argument("--no-small", action="store_true", help="skip the small model")
    parser.add_argument("--only", choices=("scrubbing", "decoding"),
                        help="run one part; the other part of an existing --out file is kept")
    parser.add_argument("--device", default="cpu", help="where the models decode: cpu (default) or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(1)
    result = json.loads(args.out.read_text(encoding="utf-8")) if args.only and args.out.exists() else {}
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch_threads": 1}
    if args.only != "decoding":
        result["scrubbing"] = bench_scrubbing(corpus(), args.repeat)
    if args.only != "scrubbing":
        result["decoding"] = [bench_decoding(size, args.tokens, args.rounds, args.device)
                              for size in (("tiny",) if args.no_small else ("tiny", "small"))]
        print(render(result))
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
