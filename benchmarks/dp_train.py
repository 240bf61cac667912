"""DP training step cost, side by side: the same model and batch trained non-privately and with DP.

For each workload (a ~134M-parameter Llama-style causal LM, fully fine-tuned and with LoRA r16,
and BERT-base sequence classification; all built from configs, random init, no hub) and each
precision (``tf32``: fp32 weights with TF32 matmuls; ``bf16``: fp32 weights under bf16 autocast),
times one optimizer step (forward, backward, clipping, noise, AdamW) for:

- ``non_private``  plain autograd, the baseline every DP figure of the same precision is divided by;
- ``opacus_hooks`` Opacus 1.6 ``grad_sample_mode="hooks"`` (materialised per-sample gradients);
- ``opacus_ghost`` Opacus 1.6 ``grad_sample_mode="ghost"`` (ghost clipping, two backward passes);
- ``bk``           ``pipelines.train.fastclip.BookKeepingClipper`` (one backward, ghost norms + book-keeping).

Each method gets a fresh model with the same seed, ``--warmup`` untimed steps, then ``--steps``
steps timed with CUDA events (median reported); peak memory is ``torch.cuda.max_memory_allocated``
since the method's model was built. A method that fails (out of memory, unsupported) is recorded
with its error and the run goes on.

Usage (from the project root):
    python benchmarks/dp_train.py --out benchmarks/results/dp_train_h200.json           # on a GPU
    python benchmarks/dp_train.py --quick --out /tmp/dp_train_quick.json                # CPU smoke run, tiny models
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

try:
    from pipelines.train.fastclip import BookKeepingClipper  # noqa: E402
except ImportError:  # a host without the project's dependencies: the module itself needs torch only
    _spec = importlib.util.spec_from_file_location("fastclip", ROOT / "pipelines" / "train" / "fastclip.py")
    _fastclip = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_fastclip)
    BookKeepingClipper = _fastclip.BookKeepingClipper

WORKLOADS = ("lm_full", "lm_lora", "bert")
# ``--snapshot DIR`` adds ``snapshot_lora``: a Hugging Face snapshot folder (e.g. a real-size Qwen2 config written by
# ``benchmarks/snapshots.py``) loaded with AutoModelForCausalLM, LoRA r16 on every projection.
SNAPSHOT: dict[str, str] = {}
METHODS = ("non_private", "opacus_hooks", "opacus_ghost", "bk")
PRECISIONS = ("tf32", "bf16")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _lm_config(quick: bool):
    from transformers import LlamaConfig

    if quick:
        return LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                           tie_word_embeddings=False, use_cache=False)
    # ~134M parameters: 2 x 24.6M untied embeddings + 12 x 7.1M decoder layers
    return LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=2048,
                       tie_word_embeddings=False, use_cache=False, attn_implementation="sdpa")


def _bert_config(quick: bool):
    from transformers import BertConfig

    if quick:
        return BertConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=64, num_labels=2)
    return BertConfig(num_labels=2, attn_implementation="sdpa")  # BERT-base: 12 x 768, 30522 vocab, ~109M


def build_model(workload: str, *, quick: bool, device: torch.device, seed: int) -> nn.Module:
    """Build the workload's model from its config (random init, no hub) on ``device``."""
    from transformers import BertForSequenceClassification, LlamaForCausalLM

    torch.manual_seed(seed)
    if workload == "snapshot_lora":
        import peft
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(SNAPSHOT["dir"], local_files_only=True, dtype=torch.float32)
        model.config.use_cache = False
        model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                           target_modules=LORA_TARGETS))
        return model.to(device).train()
    with device:
        if workload == "bert":
            model = BertForSequenceClassification(_bert_config(quick))
        else:
            model = LlamaForCausalLM(_lm_config(quick))
    if workload == "lm_lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                           target_modules=LORA_TARGETS))
    return model.to(device).train()


def make_batch(workload: str, *, batch: int, seq: int, vocab: int, device: torch.device, seed: int) -> dict:
    """A fixed random batch with explicit batch-first position ids (Opacus needs them, BK checks them)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq), generator=gen)
    out = {"input_ids": ids, "position_ids": torch.arange(seq).expand(batch, seq).contiguous()}
    if workload == "bert":
        out["token_type_ids"] = torch.zeros_like(ids)
        out["labels"] = torch.randint(0, 2, (batch,), generator=gen)
    return {k: v.to(device) for k, v in out.items()}


def _logits_and_targets(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if "labels" in batch:
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       token_type_ids=batch["token_type_ids"]).logits
        return logits.float(), batch["labels"]
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    return logits[:, :-1].float(), batch["input_ids"][:, 1:]


def _mean_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    logits, targets = _logits_and_targets(model, batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _step_fn(method: str, model: nn.Module, batch: dict, *, sigma: float, clip: float, autocast):
    """Return (step callable, objects to keep alive) for one method."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    size = batch["input_ids"].shape[0]
    if method == "non_private":
        def step():
            with autocast():
                loss = _mean_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step, (model, optimizer)
    if method == "bk":
        clipper = BookKeepingClipper(model, max_grad_norm=clip, noise_multiplier=sigma, expected_batch_size=size)

        def step():
            with autocast():
                loss = _mean_loss(model, batch)
            clipper.backward(loss)
            clipper.step(optimizer)
        return step, (model, optimizer, clipper)
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    # make_private needs a loader for the sample rate only; the timed steps reuse the fixed batch
    loader = DataLoader(TensorDataset(torch.zeros(size * 10, 1)), batch_size=size)
    engine = PrivacyEngine(accountant="rdp")
    if method == "opacus_hooks":
        private, dp_opt, _ = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma, max_grad_norm=clip,
            poisson_sampling=False, grad_sample_mode="hooks",
        )

        def step():
            with autocast():
                loss = _mean_loss(private, batch)
            loss.backward()
            dp_opt.step()
            dp_opt.zero_grad(set_to_none=True)
        return step, (private, dp_opt, engine)
    if method == "opacus_ghost":
        private, dp_opt, criterion, _ = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma, max_grad_norm=clip,
            poisson_sampling=False, grad_sample_mode="ghost", criterion=nn.CrossEntropyLoss(),
        )

        def step():
            with autocast():
                logits, targets = _logits_and_targets(private, batch)
                shape = tuple(logits.shape[:2]) if logits.dim() == 3 else None
                loss = criterion(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), shape=shape)
            loss.backward()
            dp_opt.step()
            dp_opt.zero_grad(set_to_none=True)
        return step, (private, dp_opt, criterion, engine)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def time_method(workload: str, method: str, precision: str, *, args, device: torch.device) -> dict:
    """Build a fresh model, warm up, time ``args.steps`` steps; return the figures (or the error)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    dims = args.shapes[workload]
    model = build_model(workload, quick=args.quick, device=device, seed=args.seed)
    vocab = model.config.vocab_size
    batch = make_batch(workload, batch=dims[0], seq=dims[1], vocab=vocab, device=device, seed=args.seed + 1)

    def autocast():
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type, enabled=False)

    result = {"workload": workload, "method": method, "precision": precision, "batch": dims[0], "seq": dims[1],
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total_params": sum(p.numel() for p in model.parameters())}
    keep = None
    try:
        step, keep = _step_fn(method, model, batch, sigma=args.sigma, clip=args.clip, autocast=autocast)
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(device)
                start.record()
                step()
                end.record()
                torch.cuda.synchronize(device)
                times.append(start.elapsed_time(end))
            else:
                started = time.perf_counter()
                step()
                times.append((time.perf_counter() - started) * 1000)
        median = statistics.median(times)
        result.update(step_ms=round(median, 3), step_ms_min=round(min(times), 3), step_ms_max=round(max(times), 3),
                      samples_per_s=round(dims[0] / (median / 1000), 1),
                      tokens_per_s=round(dims[0] * dims[1] / (median / 1000)))
        if cuda:
            result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    except Exception as exc:  # noqa: BLE001 - one failing method (OOM, unsupported) must not end the run
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        del keep, model, batch
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return result


def check_against_opacus(workload: str, *, args, device: torch.device) -> dict:
    """BK's clipped gradient (noise 0) against Opacus hooks + DPOptimizer on the full-size model, fp32.

    The bound is the median per-sample norm, so half the batch is clipped and half is not.
    """
    import copy

    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    size, seq = (2, 16) if args.quick else (4, 64)
    model = build_model(workload, quick=args.quick, device=device, seed=args.seed)
    batch = make_batch(workload, batch=size, seq=seq, vocab=model.config.vocab_size, device=device,
                       seed=args.seed + 2)
    reference = copy.deepcopy(model)
    probe = BookKeepingClipper(model, max_grad_norm=1e9, noise_multiplier=0.0, expected_batch_size=size)
    # the same dropout masks in every forward pass (BERT has dropout on)
    torch.manual_seed(args.seed)
    norms = probe.backward(_mean_loss(model, batch))
    probe.remove()
    bound = float(norms.median())
    clipper = BookKeepingClipper(model, max_grad_norm=bound, noise_multiplier=0.0, expected_batch_size=size)
    torch.manual_seed(args.seed)
    clipper.backward(_mean_loss(model, batch))
    clipper.finalize_gradients()
    ours = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    clipper.remove()
    del model
    gsm = GradSampleModule(reference, batch_first=True, loss_reduction="mean")
    params = [p for p in gsm.parameters() if p.requires_grad]
    optimizer = DPOptimizer(torch.optim.SGD(params, lr=0.0), noise_multiplier=0.0, max_grad_norm=bound,
                            expected_batch_size=size)
    torch.manual_seed(args.seed)
    _mean_loss(gsm, batch).backward()
    optimizer.pre_step()
    theirs = {n.removeprefix("_module."): p.grad for n, p in gsm.named_parameters() if p.requires_grad}
    missing = sorted(set(ours) ^ set(theirs))
    diff = sum(float((ours[n] - theirs[n]).double().pow(2).sum()) for n in theirs if n in ours)
    total = sum(float(theirs[n].double().pow(2).sum()) for n in theirs)
    # parameters whose true gradient is ~0 (BERT's key bias: softmax ignores it) have no meaningful relative error
    floor = 1e-4 * max(float(g.norm()) for g in theirs.values())
    worst = max(((float((ours[n] - theirs[n]).norm() / theirs[n].norm()), n)
                 for n in theirs if n in ours and float(theirs[n].norm()) > floor), default=(0.0, None))
    gsm._close()
    del gsm, reference, optimizer
    gc.collect()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {"workload": workload, "batch": size, "seq": seq, "bound": bound,
            "clipped": int((norms > bound).sum()), "params_compared": len(theirs), "name_mismatch": missing,
            "relative_error": (diff / total) ** 0.5 if total else None,
            "worst_param": {"name": worst[1], "relative_error": worst[0]}}


def _environment(device: torch.device) -> dict:
    def run(cmd: list[str]) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "peft", "opacus"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "git_rev": os.environ.get("GIT_REV") or run(["git", "rev-parse", "HEAD"]),
        "git_dirty": os.environ.get("GIT_DIRTY"),
        "versions": versions,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "nvidia_smi": run(["nvidia-smi"]) if device.type == "cuda" else None,
    }


def _table(results: list[dict]) -> str:
    base = {(r["workload"], r["precision"]): r.get("step_ms") for r in results if r["method"] == "non_private"}
    lines = [f"{'workload':9} {'prec':5} {'method':13} {'B':>4} {'T':>4} {'step ms':>9} {'samples/s':>10} "
             f"{'peak GiB':>9} {'x non-DP':>8}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['workload']:9} {r['precision']:5} {r['method']:13} {r['batch']:4} {r['seq']:4}  "
                         f"FAILED {r['error'][:70]}")
            continue
        ref = base.get((r["workload"], r["precision"]))
        ratio = f"{r['step_ms'] / ref:8.2f}" if ref else f"{'-':>8}"
        mem = f"{r['peak_mem_gib']:9.2f}" if "peak_mem_gib" in r else f"{'-':>9}"
        lines.append(f"{r['workload']:9} {r['precision']:5} {r['method']:13} {r['batch']:4} {r['seq']:4} "
                     f"{r['step_ms']:9.2f} {r['samples_per_s']:10.1f} {mem} {ratio}")
    return "\n".join(lines)


def _pairs(text: str, names: tuple[str, ...], what: str) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in names]
    if unknown or not chosen:
        raise SystemExit(f"error: unknown {what} {unknown or text!r}; choose from {', '.join(names)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and write the JSON report. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--out", help="write the JSON report here (figures, command, git rev, versions, nvidia-smi)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny models, B2 T16, 1 warmup + 2 steps")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--precisions", default=None, help="comma list of tf32, bf16 (default both; --quick: tf32)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per method (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 10)")
    parser.add_argument("--lm-shape", default="16x256", help="LM batch x sequence length (default 16x256)")
    parser.add_argument("--bert-shape", default="64x128", help="BERT batch x sequence length (default 64x128)")
    parser.add_argument("--sigma", type=float, default=1.0, help="noise multiplier (cost does not depend on it)")
    parser.add_argument("--clip", type=float, default=1.0, help="max per-sample gradient norm")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--no-check", action="store_true",
                        help="skip the fp32 check of BK's clipped gradient against Opacus hooks (noise 0)")
    parser.add_argument("--snapshot", default=None,
                        help="a causal-LM snapshot folder: adds workload snapshot_lora (LoRA r16 on its projections)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    args = parser.parse_args(argv)

    if args.snapshot:
        SNAPSHOT["dir"] = args.snapshot
    known = WORKLOADS + (("snapshot_lora",) if args.snapshot else ())
    workloads = _pairs(args.workloads, known, "workload")
    methods = _pairs(args.methods, METHODS, "method")
    if "non_private" not in methods:
        methods.insert(0, "non_private")  # the ratio needs its baseline
    precisions = _pairs(args.precisions or ("tf32" if args.quick else ",".join(PRECISIONS)), PRECISIONS, "precision")
    try:
        lm = tuple(int(x) for x in args.lm_shape.lower().split("x"))
        bert = tuple(int(x) for x in args.bert_shape.lower().split("x"))
        assert len(lm) == 2 and len(bert) == 2 and min(lm + bert) > 0
    except (ValueError, AssertionError):
        print("error: --lm-shape/--bert-shape must look like 16x256", file=sys.stderr)
        return 2
    if args.quick:
        lm, bert = (2, 16), (2, 16)
    args.shapes = {"lm_full": lm, "lm_lora": lm, "bert": bert, "snapshot_lora": lm}
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.steps = args.steps if args.steps is not None else (2 if args.quick else 10)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))
    if args.quick:
        torch.set_num_threads(1)

    checks = []
    if not args.no_check:
        for workload in workloads:
            try:
                checks.append(check_against_opacus(workload, args=args, device=device))
            except Exception as exc:  # noqa: BLE001 - recorded, the timings still run
                checks.append({"workload": workload, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(json.dumps(checks[-1]), flush=True)

    results = []
    for workload in workloads:
        for precision in precisions:
            for method in methods:
                r = time_method(workload, method, precision, args=args, device=device)
                results.append(r)
                print(json.dumps(r), flush=True)
    base = {(r["workload"], r["precision"]): r.get("step_ms") for r in results if r["method"] == "non_private"}
    for r in results:
        ref = base.get((r["workload"], r["precision"]))
        if ref and "step_ms" in r:
            r["ratio_vs_non_private"] = round(r["step_ms"] / ref, 3)
    table = _table(results)
    print(table)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick,
              "settings": {"warmup": args.warmup, "steps": args.steps, "sigma": args.sigma, "clip": args.clip,
                           "seed": args.seed, "shapes": args.shapes, "lora_targets": LORA_TARGETS,
                           "optimizer": "AdamW", "tf32_matmul": device.type == "cuda"},
              "environment": _environment(device), "equivalence_vs_opacus_fp32": checks, "results": results,
              "table": table}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0 if all("error" not in r for r in results + checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
