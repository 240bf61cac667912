"""Causal-LM serving: today's path (HF ``generate``, one padded batch at a time) vs continuous batching.

Both engines serve the same model in the same dtype to the same closed-loop clients: each client sends a
``--prompt-tokens`` prompt, waits for ``--new-tokens`` new tokens (EOS ignored, so every answer has the same
length), and sends the next. Measured per engine: requests/s, generated tokens/s and the p95 request latency,
against one p95 ceiling for both (``--p95-ceiling-ms``).

* ``hf_generate``: what ``pipelines.serving`` does today (``DynamicBatcher`` + ``inference.generate``): waiting
  requests are fused into one left-padded ``model.generate`` call of at most ``--max-batch-size`` rows (the
  serving default, 16), and the next batch starts only when the whole batch is done.
* ``continuous_batching``: :class:`pipelines.serving.engine.TransformersEngine` (transformers'
  ``init_continuous_batching``: paged KV cache, requests join and leave the running batch every step).

    python benchmarks/serving_llm.py --quick                          # CPU, tiny model, seconds
    python -m benchmarks.snapshots --family qwen2 --out /tmp/qwen2-1b --shape ...   # (H200) a ~1B Qwen2
    python benchmarks/serving_llm.py --snapshot /tmp/qwen2-1b --dtype bfloat16 --out benchmarks/results/serving_llm.json

Results JSON: ``{"runs": [{"engine", "req_s", "tok_s", "p95_ms", ...}], "speedup_req_s": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_model(seed: int = 0) -> Any:
    """A random-init Qwen2 small enough for a CPU run in seconds (``--quick``)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2ForCausalLM(config)


def load(args: argparse.Namespace) -> Any:
    """The model on the device in the dtype asked for (a snapshot folder, else the tiny model)."""
    import torch

    dtype = getattr(torch, args.dtype)
    if args.snapshot:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.snapshot, dtype=dtype)
    else:
        model = tiny_model(args.seed)
    return model.to(device=args.device, dtype=dtype).eval()


def make_prompts(n: int, *, length: int, vocab: int, seed: int) -> list[list[int]]:
    """``n`` prompts of ``length`` random token ids (ids below 3 left out: special tokens of most vocabularies)."""
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(length)] for _ in range(n)]


class StaticBatcher:
    """Today's path: one thread fuses waiting requests into one ``generate`` call, one batch at a time."""

    def __init__(self, model: Any, *, max_batch_size: int, max_wait_ms: float, pad_token_id: int = 0) -> None:
        self.model, self.max_batch_size, self.max_wait = model, max_batch_size, max_wait_ms / 1000.0
        self.pad = pad_token_id
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, prompt: Sequence[int], *, max_tokens: int) -> Future:
        future: Future = Future()
        self._queue.put((list(prompt), max_tokens, future))
        return future

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                for future, tokens in zip((f for _p, _n, f in batch), self._generate(batch)):
                    future.set_result(tokens)
            except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting client
                for _p, _n, future in batch:
                    future.set_exception(exc)

    def _generate(self, batch: list) -> list[int]:
        import torch

        width = max(len(p) for p, _n, _f in batch)
        budget = max(n for _p, n, _f in batch)
        device = self.model.device
        ids = torch.tensor([[self.pad] * (width - len(p)) + p for p, _n, _f in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _n, _f in batch], device=device)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget,
                                      min_new_tokens=budget, do_sample=False, eos_token_id=None,
                                      pad_token_id=self.pad)
        return [min(n, out.shape[1] - width) for _p, n, _f in batch]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)


def drive(submit: Callable[[list[int]], Future], prompts: list[list[int]], *, clients: int,
          requests: int, seconds: float) -> dict[str, Any]:
    """Closed-loop clients: each sends a request, waits for its answer, sends the next; stops at ``requests``
    answers or ``seconds``, whichever comes first. Returns req/s, tok/s and latency percentiles."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    issued = [0]
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        while True:
            with lock:
                if issued[0] >= requests or time.perf_counter() >= stop_at:
                    return
                n = issued[0]
                issued[0] += 1
            started = time.perf_counter()
            generated = submit(prompts[(index * 7919 + n) % len(prompts)]).result()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                tokens[0] += generated

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000.0 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else 0.0

    return {"requests": len(latencies), "seconds": round(wall, 3), "req_s": round(len(latencies) / wall, 3),
            "tok_s": round(tokens[0] / wall, 1), "p50_ms": pct(0.50), "p95_ms": pct(0.95)}


def run_engine(name: str, model: Any, args: argparse.Namespace, prompts: list[list[int]]) -> dict[str, Any]:
    """Warm the engine up, then measure it under ``args.clients`` clients."""
    from pipelines.serving.engine import EngineConfig, TransformersEngine

    if name == "hf_generate":
        engine: Any = StaticBatcher(model, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms)

        def submit(p: list[int]) -> Future:
            return engine.submit(p, max_tokens=args.new_tokens)
    else:
        # continuous_batching[+graphs][+compile]: the engine with CUDA graphs forced on / torch.compile level 1
        variants = set(name.split("+")[1:])
        if not variants <= {"graphs", "compile"} or not name.startswith("continuous_batching"):
            raise SystemExit(f"unknown engine {name!r}: hf_generate or continuous_batching[+graphs][+compile]")
        config = EngineConfig(num_blocks=args.num_blocks, page_size=args.page_size,
                              max_batch_tokens=args.max_batch_tokens, timeout_s=3600,
                              cuda_graphs=True if "graphs" in variants else None,
                              compile_level=1 if "compile" in variants else 0)
        engine = TransformersEngine(model, config=config, eos_token_id=None)
        inner = engine.submit

        def submit(p: list[int]) -> Future:
            done: Future = Future()
            pending = inner(p, max_tokens=args.new_tokens, ignore_eos=True)
            pending.add_done_callback(lambda f: done.set_exception(f.exception()) if f.exception()
                                      else done.set_result(f.result().completion_tokens))
            return done
    try:
        drive(submit, prompts, clients=min(args.clients, args.warmup), requests=args.warmup, seconds=600)
        if args.device == "cuda":
            import torch

            torch.cuda.synchronize()
        figures = drive(submit, prompts, clients=args.clients, requests=args.requests, seconds=args.seconds)
    finally:
        engine.close()
    return {"engine": name, "clients": args.clients, "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens, **figures,
            "within_ceiling": bool(figures["p95_ms"] <= args.p95_ceiling_ms)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", help="Hugging Face snapshot folder (benchmarks/snapshots.py); default: a tiny "
                                           "random-init Qwen2")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny model, 4 clients, short answers")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                        help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=1024, help="most answers per measured run")
    parser.add_argument("--seconds", type=float, default=120, help="most seconds per measured run")
    parser.add_argument("--warmup", type=int, default=16, help="requests before measuring (not counted)")
    parser.add_argument("--p95-ceiling-ms", type=float, default=30000, help="one p95 latency ceiling for both")
    parser.add_argument("--max-batch-size", type=int, default=16, help="today's path: rows per generate call "
                                                                       "(serving.max_batch_size)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="today's path: serving.max_wait_ms")
    parser.add_argument("--num-blocks", type=int, default=None, help="engine KV cache blocks (default: sized "
                                                                     "from free GPU memory)")
    parser.add_argument("--page-size", type=int, default=256)
    parser.add_argument("--max-batch-tokens", type=int, default=None)
    parser.add_argument("--engines", default="hf_generate,continuous_batching",
                        help="comma-separated: hf_generate, continuous_batching[+graphs][+compile]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all engines, interleaved (engine A, B, A, "
                        "B, ...); each engine's figures are then the median of its rounds, the rounds are kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", help="write the results JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompt_tokens, args.new_tokens, args.clients = min(args.prompt_tokens, 16), min(args.new_tokens, 8), 4
        args.requests, args.warmup, args.max_batch_size = min(args.requests, 12), 2, min(args.max_batch_size, 4)
        if args.num_blocks is None:
            args.num_blocks, args.page_size, args.max_batch_tokens = 32, 16, 128
        if args.device == "auto":
            args.device = "cpu"
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu" and args.num_blocks is None:
        # transformers sizes the paged cache from free GPU memory; on CPU give it: every client's whole answer.
        args.page_size = min(args.page_size, 32)
        per_request = -(-(args.prompt_tokens + args.new_tokens) // args.page_size)
        args.num_blocks = args.clients * per_request + 4
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    return args


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine's figures over its rounds: the median of each measured number (the run itself when alone)."""
    if len(runs) == 1:
        return dict(runs[0])
    out = {k: v for k, v in runs[0].items() if k != "round"}
    for key in ("requests", "seconds", "req_s", "tok_s", "p50_ms", "p95_ms"):
        values = sorted(r[key] for r in runs)
        mid = len(values) // 2
        out[key] = values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 3)
    out["within_ceiling"] = all(r["within_ceiling"] for r in runs)
    out["rounds"] = len(runs)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args)
    prompts = make_prompts(max(64, args.clients * 2), length=args.prompt_tokens, vocab=model.config.vocab_size,
                           seed=args.seed)
    rounds: list[list[dict[str, Any]]] = []
    for round_no in range(max(1, args.repeat)):
        this_round = []
        for name in args.engines.split(","):
            run = run_engine(name, model, args, prompts)
            run["round"] = round_no
            this_round.append(run)
            print(json.dumps(run), flush=True)
        rounds.append(this_round)
    runs = [_median_run([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    by_name = {r["engine"]: r for r in runs}
    results: dict[str, Any] = {
        "runs": runs, "model": args.snapshot or "tiny-qwen2", "dtype": args.dtype, "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "parameters": sum(p.numel() for p in model.parameters()), "p95_ceiling_ms": args.p95_ceiling_ms,
        "command": "python benchmarks/serving_llm.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    engines = [r for r in runs if r["engine"] != "hf_generate"]
    if "hf_generate" in by_name and engines:
        today = by_name["hf_generate"]
        for run in engines:
            run["speedup_req_s"] = round(run["req_s"] / today["req_s"], 3) if today["req_s"] else None
        # the headline: the fastest engine variant whose p95 stays under the one ceiling
        best = max((r for r in engines if r["within_ceiling"]), key=lambda r: r["req_s"], default=engines[0])
        results["best_engine"] = best["engine"]
        results["speedup_req_s"] = round(best["req_s"] / today["req_s"], 3) if today["req_s"] else None
        results["speedup_tok_s"] = round(best["tok_s"] / today["tok_s"], 3) if today["tok_s"] else None
        results["both_within_ceiling"] = today["within_ceiling"] and best["within_ceiling"]
    if len(rounds) > 1:
        results["rounds"] = rounds
        if "hf_generate" in by_name and engines:
            # the ratio of each round (side by side), so the spread of the headline shows
            today_i = [r["engine"] for r in rounds[0]].index("hf_generate")
            best_i = [r["engine"] for r in rounds[0]].index(results["best_engine"])
            ratios = sorted(round(r[best_i]["req_s"] / r[today_i]["req_s"], 3) for r in rounds)
            results["round_speedups_req_s"] = ratios
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
