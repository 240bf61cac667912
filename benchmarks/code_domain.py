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
by the evaluation, not here). Target: constraints cost <= 10 % of tokens/s.

Usage (from the project root):
    .venv/bin/python benchmarks/code_domain.py                 # writes benchmarks/results/code_domain.json
    .venv/bin/python benchmarks/code_domain.py --repeat 1 --tokens 32 --no-small   # smoke test
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


def bench_decoding(size: str, tokens: int, repeat: int) -> dict:
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
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
    stops = stop_token_ids(model, tokenizer)
    vocab = model.get_output_embeddings().weight.shape[0]
    cache = GrammarCache(tokenizer, vocab_size=vocab, stop_ids=stops)
    prompts = ["def add(a, b):\n", "import os\n\nPATH = ", "class A:\n    def f(self):\n"]
    compile_started = time.perf_counter()
    compiled = {p: {"none": None, "json": cache.compiled("json", p), "python": cache.compiled("python", p)}
                for p in prompts}
    compile_seconds = time.perf_counter() - compile_started
    for prompt in prompts:  # warm-up: the first forward passes allocate; no mode should pay for them
        decode(model, causal_prompt_ids(tokenizer, prompt), max_new_tokens=4, stop_ids=())
    rates: dict[str, list[float]] = {"none": [], "json": [], "python": []}
    modes = list(rates)
    for r in range(repeat):
        for mode in modes[r % 3:] + modes[:r % 3]:
            count, seconds = 0, 0.0
            for prompt in prompts:
                ids = causal_prompt_ids(tokenizer, prompt)
                started = time.perf_counter()
                # No stop ids: every mode decodes the full budget unless its grammar terminates.
                out = decode(model, ids, max_new_tokens=tokens, stop_ids=(), compiled=compiled[prompt][mode],
                             cache=cache)
                seconds += time.perf_counter() - started
                count += len(out)
            rates[mode].append(count / seconds)
    median = {m: statistics.median(v) for m, v in rates.items()}
    params = sum(p.numel() for p in model.parameters())
    return {"size": size, "parameters": params, "vocab": vocab, "max_new_tokens": tokens,
            "grammar_compile_seconds": round(compile_seconds, 4),
            "tokens_per_s": {m: round(v, 1) for m, v in median.items()},
            "constraint_cost": {m: round(1 - median[m] / median["none"], 4) for m in ("json", "python")},
            "target_cost": 0.10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--no-small", action="store_true", help="skip the small model")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch_threads": 1},
              "scrubbing": bench_scrubbing(corpus(), args.repeat),
              "decoding": [bench_decoding(size, args.tokens, args.repeat)
                           for size in (("tiny",) if args.no_small else ("tiny", "small"))]}
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
