"""The largest causal LM that trains under DP on one GPU, with LoRA and with full fine-tuning, and what DP costs there.

For each fine-tuning mode (``lora``: rank-16 adapters on every projection, the base frozen; ``full``: every weight,
embeddings untied, as per-sample clipping needs) the sizes in ``--sizes`` are tried from the smallest up
(random-init Qwen2-shaped configs in ``benchmarks/configs/``, nothing downloaded): at each size one model is built in
bf16 on the GPU with activation checkpointing, and the same fixed batch is trained with

- ``non_private``: plain autograd + AdamW (the baseline the DP step time is divided by);
- ``ghost``: Opacus 1.6 ghost clipping (``grad_sample_mode="ghost"``: per-sample norms without per-sample
  gradients, a second backward for the clipped sum), noise, AdamW;
- ``bk``: book-keeping clipping (:class:`pipelines.train.fastclip.BookKeepingClipper`: one backward), noise, AdamW.

Activation checkpointing (non-reentrant) recomputes each decoder block's forward inside backward; per-sample
clipping records a layer's input in a forward hook, so the recomputed forward must not record it again (Opacus
would count a second call as a tied parameter and refuse). Book-keeping clipping skips hooks that fire inside a
backward pass; for Opacus the benchmark installs the same guard (:func:`_guard_opacus_hooks`). The per-layer
inputs the clipping keeps stay in memory either way: checkpointing saves the rest of a block's activations.

Each run: ``--warmup`` untimed steps, then the median of ``--steps`` steps timed with CUDA events; peak memory is
``torch.cuda.max_memory_allocated`` since the run started (the model's weights included). A run that runs out of
memory, fails, or would overrun its time box is recorded with the reason and the search goes on; a mode stops
climbing after the first size at which no DP run fits. The largest size per mode is the largest at which a DP run
finished. Sizes and runs are time-boxed (``--size-budget-s``, ``--budget-s``) so the whole command ends within
about 8 minutes of GPU time on one H200.

On the GPU host (repository root; opacus is not installed there: put the pure-Python package on PYTHONPATH,
e.g. ``.local/site`` carried with the run)::

    PYTHONPATH=.local/site python benchmarks/dp_largest.py --out benchmarks/results/dp_largest.json

CPU smoke run (tiny config, a few seconds; what tests/benchmarks/test_dp_largest.py runs)::

    .venv/bin/python benchmarks/dp_largest.py --smoke --out /tmp/dp_largest.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    from pipelines.train.fastclip import BookKeepingClipper  # noqa: E402
except ImportError:  # a host without the project's dependencies: the module itself needs torch only
    _spec = importlib.util.spec_from_file_location("fastclip", ROOT / "pipelines" / "train" / "fastclip.py")
    _fastclip = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_fastclip)
    BookKeepingClipper = _fastclip.BookKeepingClipper

CONFIGS = ROOT / "benchmarks" / "configs"
SIZES = ("qwen2-0.5b", "qwen2-1.5b", "qwen2-3b", "qwen2-7b", "qwen2-14b", "qwen2-32b")
MODES = ("lora", "full")
METHODS = ("non_private", "ghost", "bk")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMOKE_CONFIG = dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=256, max_position_embeddings=64,
                    tie_word_embeddings=True, rms_norm_eps=1e-6)


class TimeBox(Exception):
    """A run would overrun its time box."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dp_largest.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU, 2 steps: a test, not a measurement")
    parser.add_argument("--device", help="default: cuda, or cpu with --smoke")
    parser.add_argument("--sizes", default=",".join(SIZES), help="configs in benchmarks/configs, smallest first")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--methods", default=",".join(METHODS), help="non_private first; ghost and/or bk")
    parser.add_argument("--batch", type=int, help="sequences per step (default 8; smoke 2)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default 512; smoke 16)")
    parser.add_argument("--steps", type=int, help="timed steps (default 5; smoke 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2; smoke 1)")
    parser.add_argument("--sigma", type=float, default=1.0, help="noise multiplier")
    parser.add_argument("--clip", type=float, default=1.0, help="per-sample clipping norm")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--no-checkpointing", action="store_true", help="keep every activation (no recomputation)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole command; later sizes are skipped")
    parser.add_argument("--size-budget-s", type=float, default=150.0, help="one size of one mode (all its runs)")
    return parser


# ---------------------------------------------------------------------------------------------------- model

def _config(name: str, *, smoke: bool, mode: str):
    from transformers import AutoConfig

    values = dict(SMOKE_CONFIG) if smoke else json.loads((CONFIGS / f"{name}.json").read_text())
    values.pop("architectures", None)
    model_type = values.pop("model_type")
    if mode == "full":
        values["tie_word_embeddings"] = False  # a tied weight would be clipped as two layers (Opacus refuses it)
    values.update(use_cache=False)
    config = AutoConfig.for_model(model_type, **values)
    config._attn_implementation = "sdpa"
    return config


def _build(name: str, *, mode: str, smoke: bool, device: torch.device, lora_r: int, checkpointing: bool):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = _config(name, smoke=smoke, mode=mode)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if mode == "lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                                           target_modules=LORA_TARGETS))
    _set_checkpointing(model, checkpointing)
    return model.train()


def _set_checkpointing(model, on: bool) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # transformers 5.24 renamed gradient_* to activation_*; the GPU host's 5.17 has only the old names.
    # Non-reentrant: inputs need no requires_grad (frozen embeddings under LoRA).
    if hasattr(base, "activation_checkpointing_enable"):
        if on:
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.activation_checkpointing_disable()
    elif on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def _batch(*, batch: int, seq: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (batch, seq), generator=generator)
    # Batch-first position ids: Opacus and book-keeping clipping need every hooked input to carry the batch axis.
    return {"input_ids": ids.to(device), "position_ids": torch.arange(seq).expand(batch, seq).contiguous().to(device)}


def _logits(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    return logits[:, :-1], batch["input_ids"][:, 1:]


def _mean_loss(model, batch) -> torch.Tensor:
    logits, targets = _logits(model, batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------------- one run

def _clear_opacus_activations(model) -> None:
    # Whatever a failed or partial step left recorded must not be consumed by the next one.
    for module in model.modules():
        activations = getattr(module, "activations", None)
        if isinstance(activations, list):
            activations.clear()


def _guard_opacus_hooks() -> None:
    """Make Opacus' forward hooks ignore a forward re-run inside backward (activation checkpointing).

    The backward pass goes through the first forward's graph (the recomputation only rebuilds saved tensors), so the
    activations that first forward recorded are the ones the per-sample norms need.
    """
    from opacus.grad_sample import grad_sample_module, grad_sample_module_fast_gradient_clipping

    # Opacus 1.6 keeps the hooks in mix-in classes (the modules inherit them).
    for cls in (grad_sample_module.GradSampleHooks,
                grad_sample_module_fast_gradient_clipping.GradSampleHooksFastGradientClipping):
        hook = cls.__dict__.get("capture_activations_hook")
        if hook is None or getattr(hook, "_recompute_guard", False):
            continue

        def guarded(self, module, forward_input, outputs, _hook=hook):
            if torch._C._current_graph_task_id() != -1:
                return None
            return _hook(self, module, forward_input, outputs)

        guarded._recompute_guard = True
        setattr(cls, "capture_activations_hook", guarded)


def _runner(method: str, model, batch, *, sigma: float, clip: float):
    """(one step, cleanup) for a method on ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    size = batch["input_ids"].shape[0]
    if method == "non_private":
        def step() -> None:
            _mean_loss(model, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step, lambda: None, optimizer
    if method == "bk":
        generator = torch.Generator(device=batch["input_ids"].device).manual_seed(2)
        clipper = BookKeepingClipper(model, max_grad_norm=clip, noise_multiplier=sigma, expected_batch_size=size,
                                     generator=generator)

        def step() -> None:
            clipper.backward(_mean_loss(model, batch))
            clipper.step(optimizer)

        return step, clipper.remove, optimizer
    if method != "ghost":
        raise ValueError(f"method={method!r}: use one of {METHODS}")
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(size * 10, 1)), batch_size=size)  # the sample rate only
    _guard_opacus_hooks()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        private, dp_optimizer, criterion, _ = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma, max_grad_norm=clip,
            poisson_sampling=False, grad_sample_mode="ghost", criterion=torch.nn.CrossEntropyLoss())

    def ghost_step() -> None:
        logits, targets = _logits(private, batch)
        loss = criterion(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), shape=tuple(targets.shape))
        loss.backward()
        dp_optimizer.step()
        dp_optimizer.zero_grad(set_to_none=True)
        _clear_opacus_activations(private)

    def close() -> None:
        _clear_opacus_activations(private)
        private._close()

    return ghost_step, close, dp_optimizer


def _time_steps(step, *, steps: int, warmup: int, device: torch.device, deadline: float) -> list[float]:
    times = []
    for index in range(warmup + steps):
        if time.monotonic() > deadline:
            raise TimeBox(f"time box reached after {index} step(s)")
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(device)
            elapsed = start.elapsed_time(end)
        else:
            started = time.perf_counter()
            step()
            elapsed = (time.perf_counter() - started) * 1000
        if index >= warmup:
            times.append(elapsed)
    return times


def _error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_method(method: str, model, batch, *, args, device: torch.device, deadline: float) -> dict[str, Any]:
    """Train ``batch`` with ``method`` on ``model``; step times, peak memory, or the error (OOM included)."""
    checkpointing = not args.no_checkpointing
    _set_checkpointing(model, checkpointing)
    result: dict[str, Any] = {"method": method, "activation_checkpointing": checkpointing}
    _free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    close, optimizer = (lambda: None), None
    started = time.monotonic()
    try:
        step, close, optimizer = _runner(method, model, batch, sigma=args.sigma, clip=args.clip)
        times = _time_steps(step, steps=args.steps, warmup=args.warmup, device=device, deadline=deadline)
        median = statistics.median(times)
        size, seq = batch["input_ids"].shape
        result.update(step_ms=round(median, 2), step_ms_min=round(min(times), 2), step_ms_max=round(max(times), 2),
                      tokens_per_s=round(size * seq / (median / 1000)), timed_steps=len(times))
    except torch.cuda.OutOfMemoryError as exc:
        result.update(error="out of memory", oom=True, detail=_error(exc))
    except TimeBox as exc:
        result.update(error=f"time box: {exc}")
    except Exception as exc:  # noqa: BLE001 - one failing method (unsupported layer, ...) must not end the search
        oom = "out of memory" in str(exc).lower()
        result.update(error="out of memory" if oom else _error(exc), oom=oom)
    finally:
        if device.type == "cuda":
            result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - a failed run may leave the wrapper half made
            result.setdefault("cleanup_error", _error(exc))
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        del optimizer
        for p in model.parameters():
            p.grad = None
        _free(device)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def run_size(name: str, mode: str, *, args, device: torch.device, deadline: float, methods: list[str]) -> dict:
    """Build one size for one mode and run every method on it (non_private first)."""
    entry: dict[str, Any] = {"size": name, "mode": mode, "runs": []}
    started = time.monotonic()
    model = None
    try:
        model = _build(name, mode=mode, smoke=args.smoke, device=device, lora_r=args.lora_r,
                       checkpointing=not args.no_checkpointing)
    except Exception as exc:  # noqa: BLE001 - OOM while building: the size does not fit at all
        oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()
        entry.update(error="out of memory while building the model" if oom else _error(exc), oom=oom)
        del model
        _free(device)
        return entry
    entry["parameters"] = sum(p.numel() for p in model.parameters())
    entry["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    entry["build_s"] = round(time.monotonic() - started, 1)
    batch = _batch(batch=args.batch, seq=args.seq, vocab=model.config.vocab_size, device=device)
    for method in methods:
        if time.monotonic() > deadline:
            entry["runs"].append({"method": method, "error": "skipped: time box"})
            continue
        result = run_method(method, model, batch, args=args, device=device, deadline=deadline)
        entry["runs"].append(result)
        print(f"[dp_largest] {mode} {name} {method}: " + (
            f"{result['step_ms']} ms/step, peak {result.get('peak_mem_gib')} GiB" if "step_ms" in result
            else result["error"]), flush=True)
    baseline = next((r for r in entry["runs"] if r["method"] == "non_private" and "step_ms" in r), None)
    for run in entry["runs"]:
        if baseline is not None and run is not baseline and "step_ms" in run:
            run["slowdown_vs_non_private"] = round(run["step_ms"] / baseline["step_ms"], 2)
    entry["dp_fits"] = any("step_ms" in r for r in entry["runs"] if r["method"] != "non_private")
    entry["wall_s"] = round(time.monotonic() - started, 1)
    del model, batch
    _free(device)
    return entry


# ---------------------------------------------------------------------------------------------------- search

def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda}
    for name in ("transformers", "peft", "opacus"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            module = sys.modules.get(name)
            out[name] = getattr(module, "__version__", None)
    return out


def search(args) -> dict[str, Any]:
    """Every mode, sizes ascending until DP no longer fits; returns the report written as JSON."""
    started = time.monotonic()
    device = torch.device(args.device)
    sizes = ["smoke"] if args.smoke else [s for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    if not methods or set(methods) - set(METHODS) or methods[0] != "non_private" or len(methods) < 2:
        raise SystemExit(f"--methods={args.methods!r}: non_private first, then ghost and/or bk")
    for name in sizes:
        if not args.smoke and not (CONFIGS / f"{name}.json").is_file():
            raise SystemExit(f"--sizes: no config {CONFIGS / name}.json")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    report: dict[str, Any] = {
        "benchmark": "dp_largest", "command": "python benchmarks/dp_largest.py " + " ".join(args.argv),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        if device.type == "cuda" else None,
        "versions": _versions(), "smoke": args.smoke,
        "settings": {"batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
                     "sigma": args.sigma, "clip": args.clip, "lora_r": args.lora_r, "lora_targets": LORA_TARGETS,
                     "dtype": "float32" if device.type == "cpu" else "bfloat16 weights, gradients and AdamW states",
                     "optimizer": "AdamW", "methods": methods,
                     "activation_checkpointing": "off" if args.no_checkpointing else "non-reentrant, every decoder block",
                     "full_embeddings": "untied (tie_word_embeddings false) for full fine-tuning"},
        "modes": {},
    }
    for mode in [m for m in args.modes.split(",") if m]:
        if mode not in MODES:
            raise SystemExit(f"--modes={args.modes!r}: use lora and/or full")
        entries, largest = [], None
        for name in sizes:
            now = time.monotonic()
            if now - started > args.budget_s - 10:
                entries.append({"size": name, "mode": mode, "error": "skipped: command budget spent"})
                continue
            deadline = min(now + args.size_budget_s, started + args.budget_s)
            print(f"[dp_largest] {mode} {name}: building ({now - started:.0f}s in)", flush=True)
            entry = run_size(name, mode, args=args, device=device, deadline=deadline, methods=methods)
            entries.append(entry)
            if entry.get("dp_fits"):
                largest = name
                continue
            # No DP run finished: a larger model will not either (unless only the time box stopped it).
            timed_out = any(str(r.get("error", "")).startswith(("time box", "skipped")) for r in entry.get("runs", ()))
            if not timed_out:
                break
        report["modes"][mode] = {"largest_dp": largest, "sizes": entries}
        print(f"[dp_largest] {mode}: largest size that trains under DP: {largest}", flush=True)
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def render(report: dict) -> str:
    """The markdown table benchmarks/README.md carries for a report (a test keeps the two equal)."""
    rows = ["| mode | model | parameters (trainable) | non-private ms | ghost ms (x) | book-keeping ms (x) | peak GiB np / ghost / bk |",
            "|---|---|---:|---:|---:|---:|---|"]

    def cell(run: dict | None, *, ratio: bool) -> str:
        if run is None:
            return "-"
        if run.get("step_ms") is None:
            return "out of memory"
        text = f"{run['step_ms']:,.0f}"
        return f"{text} ({run['slowdown_vs_non_private']:.2f}x)" if ratio and run.get("slowdown_vs_non_private") else text

    for mode, block in report["modes"].items():
        for size in block["sizes"]:
            runs = {r["method"]: r for r in size["runs"]}
            peaks = " / ".join("OOM" if runs.get(m, {}).get("step_ms") is None else f"{runs[m]['peak_mem_gib']:.1f}"
                               for m in ("non_private", "ghost", "bk"))
            rows.append(f"| {mode} | {size['size']} | {size['parameters'] / 1e9:.2f}B ({size['trainable_parameters'] / 1e6:,.0f}M) "
                        f"| {cell(runs.get('non_private'), ratio=False)} | {cell(runs.get('ghost'), ratio=True)} "
                        f"| {cell(runs.get('bk'), ratio=True)} | {peaks} |")
    largest = ", ".join(f"{mode}: **{block['largest_dp']}**" for mode, block in report["modes"].items())
    s = report["settings"]
    return "\n".join(rows) + (f"\n\nLargest that trains under DP on one {report['device']} ({report['gpu_memory_gib']} GiB): {largest}. "
                             f"Batch {s['batch']} x {s['seq']} tokens, {s['dtype']}, activation checkpointing "
                             f"({s['activation_checkpointing']}), LoRA r {s['lora_r']} on every projection; median of "
                             f"{s['steps']} steps after {s['warmup']} warm-up; `{report['command']}`.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.batch = args.batch or (2 if smoke else 8)
    args.seq = args.seq or (16 if smoke else 512)
    args.steps = args.steps or (2 if smoke else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 2)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; use --smoke (CPU) or run on the GPU host", file=sys.stderr)
        return 2
    report = search(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"[dp_largest] wrote {out} ({report['wall_s']} s): "
          + ", ".join(f"{m}: {v['largest_dp']}" for m, v in report["modes"].items()), flush=True)
    return 0 if all(v["largest_dp"] for v in report["modes"].values()) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
