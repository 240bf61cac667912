"""Render the JSON written by ``benchmarks/multi_gpu.py`` as the markdown snippet benchmarks/README.md carries.

The multi-GPU figures of benchmarks/README.md are generated from the saved file, never typed in:

    .venv/bin/python benchmarks/render_results.py benchmarks/results/multi_gpu.json [--out snippet.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cell(value, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def _gpu_name(report: dict) -> str:
    rows = report.get("nvidia_smi_gpus") or ""
    names = [line.split(",")[1].strip() for line in rows.splitlines() if line.count(",") >= 3]
    if not names or rows.startswith(("unavailable", "exit ")):
        return report.get("settings", {}).get("device", "?")
    return f"{len(names)}x {names[0]}" if len(set(names)) == 1 else " + ".join(names)


def render(report: dict) -> str:
    """Return the markdown table and its provenance line for one benchmark report.

    Args:
        report: the parsed JSON of ``benchmarks/multi_gpu.py``.

    Returns:
        Markdown text ending in a newline.
    """
    settings = report["settings"]
    model = settings["model"]
    params = next((r["parameters"] for r in report["runs"] if "parameters" in r), None)
    lines = [
        f"DP training throughput, Llama-style causal LM ({_cell(params and params / 1e6, '{:.3g}')}M parameters, "
        f"hidden {model['hidden_size']}, {model['num_hidden_layers']} layers, seq {settings['seq_len']}), "
        f"{settings['per_device_batch']} expected examples per device per step (Poisson), noise "
        f"{settings['noise_multiplier']}, clip {settings['max_grad_norm']}, {settings['optimizer']}, "
        f"{settings['precision']}; {settings['steps']} timed steps after {settings['warmup']} warm-up.",
        "",
        "| Opacus mode | devices | launch | expected global batch | step (ms) | samples/s | tokens/s "
        "| speedup vs 1 | scaling efficiency | peak memory / device (GiB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        launch = (f"torchrun, {'FSDP2' if run.get('sharding') == 'fsdp' else 'DPDDP'}" if run["processes"] > 1
                  else "1 process")
        if "error" in run:
            lines.append(f"| {run['mode']} | {run['processes']} | {launch} | — | — | — | — | — | — | "
                         f"— ({run['error']}) |")
            continue
        lines.append(
            f"| {run['mode']} | {run['processes']} | {launch} | {run['expected_global_batch']} | "
            f"{run['step_ms']:.1f} | {run['samples_per_s']:.1f} | {run['tokens_per_s']:,.0f} | "
            f"{_cell(run.get('speedup_vs_1'), '{:.2f}x')} | {_cell(run.get('scaling_efficiency'), '{:.0%}')} | "
            f"{_cell(run.get('peak_memory_gib'), '{:.1f}')} |"
        )
    versions = report.get("versions", {})
    revision = report.get("git_revision")
    where = (f"git {revision[:12]}{' (+local changes)' if report.get('git_dirty_sources') else ''}" if revision
             else f"sources sha256 {report['source_sha256']['pipelines/train/ddp.py'][:12]} (ddp.py)")
    lines += [
        "",
        f"Measured {report['started_at'][:10]} on {_gpu_name(report)} ({report.get('host', '?')}), "
        f"torch {versions.get('torch')}, transformers {versions.get('transformers')}, opacus {versions.get('opacus')}, "
        f"{where}; `{report['command']}`"
        + (" — **quick smoke test, not a measurement**" if report.get("quick") else ""),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="JSON written by benchmarks/multi_gpu.py --out")
    parser.add_argument("--out", help="write the snippet here instead of printing it")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
        text = render(report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {args.report}: not a multi_gpu.py report ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
