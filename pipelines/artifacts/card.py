"""Model card (``model_card.md``) and two plots drawn as plain SVG (no matplotlib on workers).

``training_curve.svg``: one panel per series of the training history (loss, accuracy, ...) by epoch.
``epsilon.svg``: the domain's cumulative privacy spend (epsilon) over time, from the privacy ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pipelines.artifacts.manifest import reseal_manifest
from pipelines.serialize import canonical_json

CARD = "model_card.md"
CURVE = "training_curve.svg"
EPSILON = "epsilon.svg"
METRICS = "metrics.json"

_INTENDED_USE = {
    "classification": "Labelling and routing texts of this domain into the label set it was trained on, "
                      "with a human reviewing low-confidence predictions.",
    "causal_lm": "Drafting answers for this domain's assistant; answers are reviewed or rated by users, "
                 "never sent as professional advice without a person in the loop.",
    "forecast": "Short-horizon forecasts of this domain's series for planning; not for automated decisions "
                "without monitoring of the forecast error.",
}
_LIMITATIONS = (
    "Trained only on the curated partitions listed above; texts unlike them (other languages, domains or "
    "periods) may be handled poorly.",
    "Held-out metrics come from the same period as the training data and overstate quality under drift.",
    "Differential privacy bounds what the weights reveal about any one record only within the epsilon and "
    "delta stated above; the training data was PII-masked before training, not guaranteed free of it.",
)

_W, _PANEL_H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 640, 150, 70, 20, 28, 30
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        *body,
        "</svg>",
        "",
    ])


def _panel(top: float, label: str, xs: Sequence[float], ys: Sequence[float], *, x_labels: tuple[str, str],
           colour: str, step: bool = False, hline: float | None = None) -> list[str]:
    """One framed line plot at vertical offset ``top``; each panel has its own y range."""
    left, right = _PAD_L, _W - _PAD_R
    bottom = top + _PANEL_H - _PAD_B
    y_top = top + _PAD_T
    lo = min([*ys, *([hline] if hline is not None else [])])
    hi = max([*ys, *([hline] if hline is not None else [])])
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    x_lo, x_hi = min(xs), max(xs)
    x_span = (x_hi - x_lo) or 1.0

    def px(x: float) -> float:
        return round(left + (x - x_lo) / x_span * (right - left), 2) if len(xs) > 1 else (left + right) / 2

    def py(y: float) -> float:
        return round(bottom - (y - lo) / (hi - lo) * (bottom - y_top), 2)

    points: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if step and i:
            points.append((px(x), py(ys[i - 1])))
        points.append((px(x), py(y)))
    out = [
        f'<text x="{left}" y="{top + 16}" font-weight="bold">{escape(label)}</text>',
        f'<rect x="{left}" y="{y_top}" width="{right - left}" height="{bottom - y_top}" fill="none" stroke="#999"/>',
        f'<text x="{left - 4}" y="{y_top + 4}" text-anchor="end">{escape(_fmt(hi))}</text>',
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end">{escape(_fmt(lo))}</text>',
        f'<text x="{left}" y="{bottom + 14}">{escape(x_labels[0])}</text>',
        f'<text x="{right}" y="{bottom + 14}" text-anchor="end">{escape(x_labels[1])}</text>',
    ]
    if hline is not None:
        out.append(f'<line x1="{left}" y1="{py(hline)}" x2="{right}" y2="{py(hline)}" stroke="#d62728" '
                   f'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{right - 2}" y="{py(hline) - 3}" text-anchor="end" fill="#d62728">'
                   f'budget {escape(_fmt(hline))}</text>')
    if len(points) > 1:
        coords = " ".join(f"{x},{y}" for x, y in points)
        out.append(f'<polyline points={quoteattr(coords)} fill="none" stroke="{colour}" stroke-width="2"/>')
    for x, y in points[::2] if step else points:
        out.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
    return out


def training_curve_svg(history: Sequence[Mapping[str, Any]], *, title: str = "Training curve") -> str:
    """SVG of every numeric series in ``history`` (one dict per epoch, e.g. ``{"epoch": 1, "loss": 0.7}``)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(history):
        x = _num(row.get("epoch", row.get("step", i + 1)))
        x = float(i + 1) if x is None else x
        for key, value in row.items():
            y = _num(value)
            if key not in ("epoch", "step") and y is not None:
                series.setdefault(key, []).append((x, y))
    if not series:
        return _svg(_W, 60, ['<text x="20" y="35">no training history recorded</text>'], title)
    body = []
    for n, (name, pts) in enumerate(series.items()):
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        body += _panel(n * _PANEL_H, f"{name} by epoch (last {_fmt(ys[-1])})", xs, ys,
                       x_labels=(f"epoch {_fmt(xs[0])}", f"epoch {_fmt(xs[-1])}"), colour=_COLOURS[n % len(_COLOURS)])
    return _svg(_W, _PANEL_H * len(series), body, title)


def _when(value: Any) -> tuple[float | None, str]:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return moment.timestamp(), moment.strftime("%Y-%m-%d")
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp(), value.isoformat()
    text = str(value)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp(), text[:10]


def epsilon_svg(points: Sequence[tuple[Any, float]], *, budget: float | None = None,
                title: str = "Privacy spend (epsilon) over time") -> str:
    """SVG step plot of cumulative epsilon over time.

    Args:
        points: ``(when, epsilon)`` pairs, ``when`` a datetime, date or ISO string, ``epsilon`` the
            domain's total spend after that run (cumulative, as the privacy ledger composes it).
        budget: the domain's epsilon budget, drawn as a dashed line.
        title: SVG title.
    """
    parsed = [(_when(w), _num(e)) for w, e in points]
    parsed = [(w, e) for w, e in parsed if e is not None]
    if not parsed:
        return _svg(_W, 60, ['<text x="20" y="35">no privacy spend recorded (no DP run yet)</text>'], title)
    if all(w[0] is not None for w, _ in parsed):
        parsed.sort(key=lambda p: p[0][0])
        xs = [w[0] for w, _ in parsed]
    else:  # unparseable times: keep the given order, evenly spaced
        xs = [float(i) for i in range(len(parsed))]
    ys = [e for _, e in parsed]
    labels = (parsed[0][0][1], parsed[-1][0][1])
    body = _panel(0, f"epsilon spent (now {_fmt(ys[-1])})", xs, ys, x_labels=labels, colour=_COLOURS[0],
                  step=True, hline=_num(budget))
    return _svg(_W, _PANEL_H, body, title)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return _fmt(value).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def _flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, Mapping):
            out += _flat_metrics(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def model_card_markdown(manifest: Mapping[str, Any], *, intended_use: str | None = None,
                        limitations: Sequence[str] | None = None, epsilon_total: float | None = None) -> str:
    """The model card text for a manifest (see ``write_model_card``)."""
    task = manifest.get("task", "")
    lines = [
        f"# {manifest['domain']} {task} model {manifest['version']}",
        "",
        "## What",
        "",
        *_table(["field", "value"], [
            ("domain", manifest["domain"]), ("task", task), ("version", manifest["version"]),
            ("kind", manifest.get("kind")), ("parent artifact", manifest.get("parent") or "none"),
            ("code version", manifest.get("code_version")), ("created at", manifest.get("created_at")),
            ("created by", manifest.get("created_by")),
        ]),
        "",
        "The artifact id is the content address of the files listed in `manifest.json` (not repeated here, "
        "since this card is one of them).",
        "",
        "## Data",
        "",
    ]
    partitions = (manifest.get("data") or {}).get("partitions") or []
    if partitions:
        lines += _table(["interval", "curated version"], [(p["interval"], p["version"]) for p in partitions])
        lines += ["", f"{len(partitions)} partition(s); exact record counts and digests are kept in the private "
                      "store only (they would let a guesser confirm membership)."]
    else:
        lines.append("No curated partitions recorded (a base model).")
    lines += ["", "## Privacy", ""]
    dp = manifest.get("dp")
    if dp:
        lines += _table(["parameter", "value"], [(k, dp.get(k)) for k in dp])
        lines += ["", f"This run spent epsilon = {_fmt(dp['epsilon'])} at delta = {_fmt(dp['delta'])} "
                      f"({dp.get('accountant') or 'unknown'} accountant)."]
        if epsilon_total is not None:
            lines.append(f"The domain's total spend including this run is epsilon = {_fmt(epsilon_total)}.")
        lines += ["", f"**What is protected:** one {dp.get('unit') or 'record'} (one curated record; one series for a "
                      "forecaster). A person with k records in the data gets about k times this epsilon unless "
                      "their contributions are bounded per run.",
                  f"**Evaluation:** {_evaluation_note((manifest.get('metrics') or {}).get('evaluation'))}",
                  "**Published outside DP:** nothing computed from the private training records; the metrics "
                  "above come from the evaluation set named here, and the training history holds no loss."]
        lines += ["", f"![epsilon over time]({EPSILON})"]
    else:
        lines.append("Trained **without** differential privacy.")
    lines += _records_section(manifest.get("privacy"))
    lines += ["", "## Metrics", ""]
    metrics = _flat_metrics(manifest.get("metrics") or {})
    lines += _table(["metric", "value"], metrics) if metrics else ["No metrics recorded."]
    lines += ["", f"![training curve]({CURVE})", "", "## Intended use", "",
              intended_use or _INTENDED_USE.get(task, "Use within this domain only."), "", "## Limitations", ""]
    lines += [f"- {item}" for item in (limitations if limitations is not None else _LIMITATIONS)]
    return "\n".join(lines) + "\n"


def _evaluation_note(evaluation: Any) -> str:
    if evaluation == "public":
        return ("metrics, best-epoch selection and the gate use a public (consented) evaluation set, not the "
                "private records.")
    return f"{evaluation or 'not recorded'}."


def _records_section(facts: Mapping[str, Any] | None) -> list[str]:
    """Subjects (group privacy) and erasures: the manifest's ``privacy`` block, in words."""
    if not facts:
        return []
    lines = ["", "## Records, subjects and erasure", ""]
    unit = facts.get("unit") or "record"
    lines.append(f"The privacy unit is one {unit}: the ledger charges each {unit} exactly the runs that read it, "
                 "and a weekly run trains only records no earlier weekly run read.")
    k, subject_eps = facts.get("max_records_per_subject"), facts.get("subject_epsilon")
    if subject_eps is not None:
        bound = f"at most {k} record(s) per subject per run" if k else "no per-run bound on records per subject"
        lines.append(f"Records carry a (hashed) subject: {bound}; the worst subject's epsilon (group privacy over "
                     f"all of its records, this run included) is {_fmt(subject_eps)}.")
    else:
        lines.append("Records carry no subject: a person with k records is protected at about k times a record's "
                     "epsilon.")
    purged, inherited = int(facts.get("purged_since_parent") or 0), int(facts.get("purged_in_start_model") or 0)
    if purged:
        lines.append(f"{purged} record(s) were erased (purged) since the previous model; none of them is in this "
                     "run's training data.")
        if inherited:
            lines.append(f"{inherited} of them were read by the model this one was fine-tuned from, so its weights "
                         "still carry them; a monthly retrain from the base model removes them.")
    else:
        lines.append("No record was erased since the previous model.")
    return lines


def write_model_card(
    folder: str | Path,
    manifest: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    *,
    epsilon_points: Sequence[tuple[Any, float]] = (),
    epsilon_budget: float | None = None,
    intended_use: str | None = None,
    limitations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``model_card.md``, ``training_curve.svg``, ``epsilon.svg`` and ``metrics.json`` into a model folder.

    The card and plots become part of the artifact, so the folder's ``manifest.json`` is re-hashed
    afterwards: use the returned manifest (its ``artifact_id`` changed).

    Args:
        folder: the model folder that ``build_manifest`` wrote a manifest into.
        manifest: that manifest (its domain, task, version, data, dp and metrics are described).
        history: one dict per epoch, e.g. ``{"epoch": 1, "loss": 0.61, "accuracy": 0.8}``.
        epsilon_points: the domain's ``(when, cumulative epsilon)`` points from the privacy ledger.
        epsilon_budget: the domain's epsilon budget, drawn on the plot.
        intended_use: replaces the task's default intended-use paragraph.
        limitations: replaces the default list of limitations.

    Returns:
        The re-sealed manifest (as now written to ``folder/manifest.json``).
    """
    folder = Path(folder)
    title = f"{manifest['domain']} {manifest['version']}"
    totals = [_num(e) for _, e in epsilon_points]
    totals = [t for t in totals if t is not None]
    (folder / CARD).write_text(model_card_markdown(manifest, intended_use=intended_use, limitations=limitations,
                                                   epsilon_total=max(totals) if totals else None), encoding="utf-8")
    (folder / CURVE).write_text(training_curve_svg(history, title=f"Training curve, {title}"), encoding="utf-8")
    (folder / EPSILON).write_text(epsilon_svg(epsilon_points, budget=epsilon_budget,
                                              title=f"Epsilon spent, {manifest['domain']}"), encoding="utf-8")
    metrics = json.loads(json.dumps(dict(manifest.get("metrics") or {})))
    (folder / METRICS).write_bytes(canonical_json({"metrics": metrics, "history": [dict(row) for row in history]}))
    return reseal_manifest(folder, manifest)
