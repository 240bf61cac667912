"""DP training throughput on 1 GPU vs 2 GPUs (torchrun + NCCL, Opacus DPDDP), same model, same host, one run.

Command for the 2-GPU host (repository root; opacus comes from the carried wheel; writes $OUT/multi_gpu.json, ~2-4 min):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .local/wheels/opacus-*.whl && export PYTHONPATH=/tmp/site && python3 benchmarks/multi_gpu.py --out $OUT/multi_gpu.json

The model is a ~134M-parameter Llama-style causal LM (random init from a config, no hub; untied embeddings,
vocab 32000, hidden 768, 12 layers, seq 256) written once as a model folder, trained with DP (noise 1.0, clip 1.0)
through the project's one training entry point, ``pipelines.train.trainer.train`` (what ``training.devices``
launches), for each Opacus mode in ``--modes``: first as one plain process on one GPU, then with
``torchrun --nproc_per_node=2`` (one process per GPU; ``--sharding fsdp`` shards the model with FSDP2 there, ghost
clipping only). Each process has the same expected batch (``--per-device-batch``, Poisson), so 2 GPUs process twice
the global batch per step (weak scaling, the way DP training scales: larger batches at the same noise give better
privacy/utility). Samples/s is the run's ``TrainResult.samples_per_s`` (examples actually drawn over the training
steps, all ranks together; evaluation and checkpoints excluded); ``step_ms`` is the expected global batch over it.
The JSON holds the command, the git revision (or source digests when the tree has no .git), package versions,
``nvidia-smi`` and ``nvidia-smi topo -m`` output, and every run's figures; ``benchmarks/render_results.py`` turns it
into the README table. A run that fails or would overrun ``--budget-s`` is recorded with its error, not silently
dropped.

Smoke test on CPU (2 gloo processes, tiny model, about a minute):
    .venv/bin/python benchmarks/multi_gpu.py --quick --device cpu --out /tmp/multi_gpu.json
    .venv/bin/python benchmarks/multi_gpu.py --quick --device cpu --modes ghost --sharding fsdp --out /tmp/multi_gpu_fsdp.json
    .venv/bin/python benchmarks/render_results.py /tmp/multi_gpu.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The shared GPU hosts require NVLink multicast off; keep it off in every process we start.
for _name, _value in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
                      ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(_name, _value)

FULL_MODEL = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=12, num_key_value_heads=12)
QUICK_MODEL = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=2)
SOURCES = ("benchmarks/multi_gpu.py", "pipelines/train/ddp.py", "pipelines/train/trainer.py",
           "pipelines/train/session.py")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write (the lead passes $OUT/multi_gpu.json)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke test, not a measurement")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda, or cpu with --quick")
    parser.add_argument("--modes", default="hooks,ghost", help="Opacus grad_sample modes to measure, in order")
    parser.add_argument("--nproc", type=int, default=2, help="processes (GPUs) of the multi-process run")
    parser.add_argument("--per-device-batch", type=int, help="expected examples per process per step (default 16)")
    parser.add_argument("--seq-len", type=int, help="tokens per example (default 256)")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 40)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5)")
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="skip runs that would start after this many seconds (the whole command, in seconds)")
    parser.add_argument("--sharding", choices=("none", "fsdp"), default="none",
                        help="how the multi-process run holds the model (fsdp: FSDP2 shards; ghost mode only)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    return parser


def _settings(args: argparse.Namespace) -> dict:
    quick = args.quick
    return {
        "device": args.device or ("cpu" if quick else "cuda"),
        "model": QUICK_MODEL if quick else FULL_MODEL,
        "per_device_batch": args.per_device_batch or (4 if quick else 16),
        "seq_len": args.seq_len or (16 if quick else 256),
        "steps": args.steps or (3 if quick else 40),
        "warmup": args.warmup if args.warmup is not None else (1 if quick else 5),
        "noise_multiplier": args.noise_multiplier,
        "max_grad_norm": args.max_grad_norm,
        "optimizer": "adamw",
        "sharding": args.sharding,
        "learning_rate": 1e-4,
        "precision": "fp32 weights, TF32 matmuls" if not quick else "fp32",
    }


# ---------------------------------------------------------------- worker (one per process)

def _examples(n: int, seq: int, seed: int) -> list[dict]:
    """``n`` question/answer examples of about ``seq`` tokens each (random words; the model folder's tokenizer)."""
    import random

    from benchmarks.snapshots import DEFAULT_TEXTS

    words = sorted({w for text in DEFAULT_TEXTS for w in text.split()})
    rng = random.Random(seed)
    return [{"id": f"b{i}", "question": " ".join(rng.choices(words, k=seq // 2)),
             "answer": " ".join(rng.choices(words, k=seq))} for i in range(n)]


def build_model_folder(settings: dict, folder: Path) -> Path:
    """The random-init model as a base model folder (what training loads), written once before the runs."""
    from benchmarks.snapshots import build_snapshot
    from pipelines.train.snapshot import prepare_base_folder

    snapshot = build_snapshot("llama", folder / "snapshot", shape={**settings["model"],
                              "max_position_embeddings": settings["seq_len"] + 8}, tie_word_embeddings=False)
    base, _info = prepare_base_folder(snapshot, folder / "base", task="causal_lm", max_length=settings["seq_len"])
    return base


def _worker(args: argparse.Namespace) -> int:
    import torch

    from pipelines.train.spec import TrainSpec
    from pipelines.train.trainer import train, world_size

    settings = _settings(args)
    if settings["device"] == "cpu":
        torch.set_num_threads(1)
    else:
        torch.set_float32_matmul_precision("high")  # TF32, as the single-GPU figures in ENVIRONMENT.md
    processes, rank = world_size(), int(os.environ.get("RANK", "0"))
    global_batch = settings["per_device_batch"] * processes
    steps = settings["warmup"] + settings["steps"]
    work = Path(args.work)
    spec = TrainSpec(
        model_dir=args.model_dir, out_dir=str(work / "out"), checkpoint_dir=str(work / "ck"),
        train_examples=_examples(global_batch * steps, settings["seq_len"], 1234),
        eval_examples=_examples(4, settings["seq_len"], 99), epochs=1, batch_size=global_batch,
        learning_rate=settings["learning_rate"], schedule="constant", max_length=settings["seq_len"],
        noise_multiplier=settings["noise_multiplier"], max_grad_norm=settings["max_grad_norm"],
        grad_sample_mode=args.mode, sharding=args.sharding if processes > 1 else "none", seed=0,
        device=settings["device"], num_threads=1 if settings["device"] == "cpu" else None, log_every=10_000)
    if settings["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train(spec)
    parameters = _count_parameters(args.model_dir)
    step_ms = 1000 * global_batch / result.samples_per_s if result.samples_per_s else None
    (work / f"result-rank{rank}.json").write_text(json.dumps({
        "mode": args.mode, "processes": processes, "sharding": spec.sharding,
        "backend": ("nccl" if settings["device"] == "cuda" else "gloo") if processes > 1 else None,
        "device": settings["device"], "parameters": parameters, "expected_global_batch": global_batch,
        "seq_len": settings["seq_len"], "steps": result.steps, "samples_per_s": round(result.samples_per_s, 3),
        "tokens_per_s": round(result.samples_per_s * settings["seq_len"], 1),
        "step_ms": round(step_ms, 2) if step_ms else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if settings["device"] == "cuda" else None,
        "sample_rate": result.sample_rate, "epsilon": result.epsilon, "delta": result.delta,
        "world_size": result.world_size,
    }, indent=2))
    return 0


def _count_parameters(model_dir: str) -> int:
    import math

    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())


def _merge_ranks(work: Path) -> dict | None:
    """Rank 0's figures with the largest peak memory of any rank."""
    results = [json.loads(p.read_text()) for p in sorted(work.glob("result-rank*.json"))]
    if not results:
        return None
    merged = dict(results[0])
    peaks = [r["peak_memory_gib"] for r in results if r.get("peak_memory_gib") is not None]
    merged["peak_memory_gib"] = max(peaks) if peaks else None
    return merged


# ---------------------------------------------------------------- orchestrator

def _capture(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip()}"
    return (done.stdout + done.stderr).strip()


def _provenance() -> dict:
    revision = _capture(["git", "rev-parse", "HEAD"])
    status = _capture(["git", "status", "--porcelain", "--", *SOURCES])
    has_git = revision is not None and len(revision) == 40
    return {
        "git_revision": revision if has_git else None,
        "git_dirty_sources": bool(status) if has_git else None,
        "source_sha256": {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for p in SOURCES},
    }


def _versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "nccl": None}
    if torch.cuda.is_available():
        version = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    for name in ("transformers", "opacus"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _launch(command: list[str], timeout: float, env: dict) -> tuple[int | None, str]:
    # A new session, so a run that overruns can be stopped with every worker torchrun started.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output


def _orchestrate(args: argparse.Namespace, argv: list[str]) -> int:
    started = time.monotonic()
    settings = _settings(args)
    try:
        import opacus  # noqa: F401  (fail here, before any run, when the wheel was not installed)
        import torch
        import transformers  # noqa: F401
        del opacus, transformers
    except ImportError as exc:
        print(f"error: {exc}: install opacus first (python3 -m pip install --no-deps .local/wheels/opacus-*.whl)",
              file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"hooks", "ghost"}:
        print(f"error: --modes={args.modes!r}: use hooks and/or ghost, comma-separated", file=sys.stderr)
        return 2
    if args.sharding == "fsdp" and modes != ["ghost"]:
        print("error: --sharding fsdp clips with Opacus' ghost clipping: use --modes ghost", file=sys.stderr)
        return 2
    if args.nproc < 2:
        print("error: --nproc must be >= 2 (the 1-process run is always made)", file=sys.stderr)
        return 2
    if settings["device"] == "cuda" and torch.cuda.device_count() < args.nproc:
        print(f"error: {torch.cuda.device_count()} GPU(s) visible, {args.nproc} needed; "
              "run on a 2-GPU host or use --quick --device cpu", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "multi_gpu_dp_training",
        "command": shlex.join(["python3", "benchmarks/multi_gpu.py", *argv]),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "quick": args.quick,
        "settings": settings,
        **_provenance(),
        "versions": _versions(),
        "nvidia_smi": _capture(["nvidia-smi"]),
        "nvidia_smi_gpus": _capture(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                                     "--format=csv,noheader"]),
        "nvidia_smi_topo": _capture(["nvidia-smi", "topo", "-m"]),
        "runs": [],
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if settings["device"] == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    passthrough = [a for a in argv if a not in ("--worker",)]
    passthrough = _without_option(passthrough, "--out")
    failed = False
    with tempfile.TemporaryDirectory(prefix="multi-gpu-") as tmp:
        print("[multi_gpu] writing the model folder", flush=True)
        model_dir = build_model_folder(settings, Path(tmp) / "model")
        for mode in modes:
            for processes in (1, args.nproc):
                work = Path(tmp) / f"{mode}-{processes}"
                work.mkdir()
                worker = [sys.executable, str(ROOT / "benchmarks" / "multi_gpu.py"), *passthrough, "--out", "-",
                          "--worker", "--mode", mode, "--model-dir", str(model_dir), "--work", str(work)]
                if processes > 1:
                    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                                f"--nproc_per_node={processes}"]
                    command = [*launcher, *worker[1:]]
                else:
                    command = worker  # the baseline is a plain process: no process group, no DPDDP
                launch = shlex.join(["python3", *command[1:]]).replace(str(ROOT) + "/", "").replace(tmp, "$TMP")
                entry = {"mode": mode, "processes": processes, "launch": launch}
                left = args.budget_s - (time.monotonic() - started)
                if left < 30:
                    entry["error"] = f"skipped: {args.budget_s:.0f} s budget spent"
                    report["runs"].append(entry)
                    failed = True
                    continue
                print(f"[multi_gpu] {mode} x{processes}: {entry['launch']}", flush=True)
                code, output = _launch(command, timeout=left, env=env)
                merged = _merge_ranks(work) if code == 0 else None
                if merged is not None:
                    entry.update(merged)
                    print(f"[multi_gpu] {mode} x{processes}: {entry['samples_per_s']} samples/s, "
                          f"{entry['step_ms']} ms/step", flush=True)
                else:
                    failed = True
                    entry["error"] = "timed out (budget)" if code is None else f"exit {code}"
                    entry["output_tail"] = output[-4000:]
                    print(output[-4000:], file=sys.stderr)
                report["runs"].append(entry)
    for mode in modes:
        runs = {r["processes"]: r for r in report["runs"] if r["mode"] == mode and "samples_per_s" in r}
        if 1 in runs and args.nproc in runs:
            speedup = runs[args.nproc]["samples_per_s"] / runs[1]["samples_per_s"]
            runs[args.nproc]["speedup_vs_1"] = round(speedup, 3)
            runs[args.nproc]["scaling_efficiency"] = round(speedup / args.nproc, 3)
    report["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    report["wall_s"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[multi_gpu] wrote {out} ({report['wall_s']} s)", flush=True)
    return 1 if failed else 0


def _without_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == name:
            skip = True
            continue
        if item.startswith(name + "="):
            continue
        out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker(args)
    return _orchestrate(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
