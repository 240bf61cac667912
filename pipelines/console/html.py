"""Server-rendered HTML of the console pages (plain strings, every value escaped; no template engine).

Each page takes the dict its ``reads`` function returns and the signed-in :class:`ConsoleUser`: action buttons
are rendered only for users who may use them (the endpoints check again and answer 403).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from pipelines.console.access import APPROVE, REVIEW, ConsoleUser
from pipelines.console.cost import GUIDE, CostComparison, cost_svg

PAGES = (("privacy", "Privacy budgets"), ("models", "Models"), ("quarantine", "Quarantine"),
         ("review", "Human review"), ("approvals", "Approvals"), ("cost", "Cost"))

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f8fa}
nav{background:#017cee;padding:8px 16px;display:flex;gap:16px;align-items:center}
nav a{color:#fff;text-decoration:none;font-weight:500}nav a.active{text-decoration:underline}
nav .user{margin-left:auto;color:#e6f2ff;font-size:13px}
main{padding:16px 24px;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}
th{background:#eef2f6}.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b42318;font-weight:600}.ok{color:#067647}
button{background:#017cee;color:#fff;border:0;border-radius:4px;padding:4px 10px;cursor:pointer}
button.reject{background:#b42318}
.item{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px;margin:8px 0}
.item.current{outline:3px solid #017cee}.item.done{opacity:.6}
.msg{padding:8px;background:#fffbe6;border:1px solid #f0d060;margin:8px 0;display:none}
kbd{border:1px solid #999;border-radius:3px;padding:0 4px;font-size:12px;background:#fff}
form.inline{display:inline}input[type=number]{width:140px}
"""

_JS = """
async function consolePost(url, body){
  const r = await fetch(url, {method:'POST', headers:{'Content-Type':'application/json'},
                              credentials:'same-origin', body: JSON.stringify(body)});
  const text = await r.text(); let data; try { data = JSON.parse(text); } catch(e) { data = {detail:text}; }
  const box = document.getElementById('msg');
  if (box) { box.style.display='block'; box.textContent = r.ok ? (data.message || 'done') : ('error ' + r.status +
             ': ' + (data.detail || text)); }
  return {ok:r.ok, status:r.status, data:data};
}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _n(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, id_: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{_e(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if rows else \
        "<p><em>none</em></p>"


def layout(*, base: str, page: str, title: str, user: ConsoleUser, body: str) -> str:
    """A full page: navigation across the console pages, the user and their permissions, then ``body``."""
    links = "".join(f'<a href="{_e(base)}/{p}" class="{"active" if p == page else ""}">{_e(t)}</a>'
                    for p, t in PAGES)
    who = f"{_e(user.name)} ({', '.join(sorted(user.permissions))})"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)} · operations console"
            f"</title><style>{_CSS}</style><script>{_JS}</script></head><body>"
            f'<nav><a href="/">Airflow</a>{links}<span class="user" id="user">{who}</span></nav>'
            f'<main><h1>{_e(title)}</h1><div id="msg" class="msg"></div>{body}</main></body></html>')


def domain_picker(*, base: str, page: str, domains: Sequence[str], current: str) -> str:
    links = " · ".join(f"<b>{_e(d)}</b>" if d == current else f'<a href="{_e(base)}/{page}?domain={_e(d)}">{_e(d)}</a>'
                       for d in domains)
    return f"<p>Domain: {links}</p>"


def privacy_html(data: Mapping[str, Any]) -> str:
    rows = [[_e(p["partition"]), str(len(p["runs"])), f'<span class="num">{_n(p["epsilon"])}</span>',
             _n(p["budget"]), f'<span class="num">{_n(p["remaining"])}</span>',
             f'{_n(p["weekly_epsilon"])} / {_n(p["weekly_budget"])}',
             f'{_n(p["monthly_epsilon"])} / {_n(p["monthly_budget"])}',
             f'<span class="bad">{_e(", ".join(p["over_budget"]))}</span>' if p["over_budget"] else
             '<span class="ok">within</span>'] for p in data["partitions"]]
    runs = [[_e(r["run_id"]), _e(r["kind"]), _e(r["status"]), _n(r["epsilon"]), str(r["steps"]),
             _e(", ".join(r["partitions"])), _e(r["created_at"]), _e(r["created_by"])] for r in data["runs"]]
    refused = [[_e(r["run_id"]), _e(r["kind"]), _e(r["created_at"]), _e(r["reason"]), _e(r["by"])]
               for r in data["refused"]]
    return (f'<p>Budget ε = {_n(data["epsilon"], 3)} per record at δ = {_e(data["delta"])} '
            f'({_e(data["accountant"])}). Same records as <code>python -m pipelines privacy budget --domain '
            f'{_e(data["domain"])}</code>.</p><div id="epsilon-plot">{data["svg"]}</div>'
            "<h2>Spend per partition</h2>"
            + _table(("partition", "runs", "ε spent", "budget", "remaining", "weekly", "monthly", "status"), rows,
                     id_="partitions")
            + "<h2>Runs that spent it</h2>"
            + _table(("run", "kind", "status", "ε (run)", "steps", "partitions", "created", "by"), runs, id_="runs")
            + "<h2>Refused (void) reservations</h2>"
            + _table(("run", "kind", "created", "reason", "by"), refused, id_="refused"))


def models_html(data: Mapping[str, Any], *, user: ConsoleUser, base: str) -> str:
    domain = data["domain"]
    prod = data["production"]
    head = (f'<p id="production">Production: <b>{_e(prod["version"])}</b> <code>{_e(prod["artifact_id"])}</code> '
            f'({_e(prod["action"])} #{_e(prod["number"])} by {_e(prod["who"])} at {_e(prod["when"])})</p>'
            if prod else '<p id="production">No model in production yet.</p>')
    can = user.can(APPROVE)
    history = []
    for r in data["history"]:
        gate = r.get("gate") or {}
        numbers = (f'{_e(gate.get("metric"))}: {_n(gate.get("candidate_value"))} vs {_n(gate.get("production_value"))}'
                   f' ({_e(gate.get("reason"))})') if gate.get("metric") else _e(gate.get("skipped") or gate.get("reason"))
        history.append([str(r["number"]), _e(r["action"]), _e(r["version"]), f'<code>{_e(r["artifact_id"])}</code>',
                        _e(r["who"]), _e(r["when"]), _e(r["why"]), numbers])
    artifacts = []
    for a in data["artifacts"]:
        metrics = ", ".join(f"{_e(k)}={_n(v)}" for k, v in sorted(a["metrics"].items()))
        card = f'<a href="{_e(base)}/models/{_e(domain)}/{_e(a["artifact_id"])}">card</a>'
        action = ""
        if can and a["was_production"] and not a["production"]:
            action = (f'<button class="rollback" data-artifact="{_e(a["artifact_id"])}" '
                      f'onclick="rollback(this)">Roll back to {_e(a["version"])}</button>')
        artifacts.append([_e(a["version"]), f'<code>{_e(a["artifact_id"])}</code>', _e(a["kind"]),
                          "production" if a["production"] else "", metrics, _n(a["epsilon"]), _e(a["created_at"]),
                          card, action])
    script = (f"<script>async function rollback(b){{const why=prompt('Why roll back the {_e(domain)} model?');"
              f"if(!why)return;const r=await consolePost('{_e(base)}/api/models/{_e(domain)}/rollback',"
              "{to: b.dataset.artifact, why: why});if(r.ok)location.reload();}</script>") if can else ""
    return (head + "<h2>Promotion and rollback history</h2>"
            + _table(("#", "action", "version", "artifact", "who", "when", "why", "gate vs baseline"), history,
                     id_="history")
            + "<h2>Artifacts</h2>"
            + _table(("version", "artifact", "kind", "", "metrics", "ε", "created", "", ""), artifacts,
                     id_="artifacts") + script)


def card_html(data: Mapping[str, Any]) -> str:
    card = data.get("card")
    plots = "".join(f"<div>{data[k]}</div>" for k in ("training_curve_svg", "epsilon_svg") if data.get(k))
    return (f'<p>Version {_e(data["version"])} <code>{_e(data["artifact_id"])}</code></p>{plots}'
            f'<pre style="white-space:pre-wrap;background:#fff;padding:8px">'
            f'{_e(card) if card is not None else "(no readable model card)"}</pre>')


def quarantine_html(data: Mapping[str, Any], *, user: ConsoleUser, base: str) -> str:
    domain = data["domain"]
    can = user.can(REVIEW)
    totals = _table(("reason", "records"), [[_e(k), str(v)] for k, v in data["by_reason"].items()], id_="totals")
    parts = []
    for p in data["partitions"]:
        counts = ", ".join(f"{_e(k)}: {v}" for k, v in p["by_reason"].items())
        samples = []
        for s in p["samples"]:
            release = _e(s["released"]) if s["released"] else "requested (pending)" if s.get("requested") else ""
            if can and s["kind"] == "record" and not release:
                release = (f'<button class="release" data-interval="{_e(p["interval"])}" data-id="{_e(s["id"])}" '
                           'onclick="release(this)">Release</button>')
            samples.append([f'<code>{_e(s["id"])}</code>', _e(s["reason"]), _e(s["stage"]), _e(s["detail"]),
                            f'<span class="sample">{_e(s["text"])}</span>', release])
        requests = [[_e(r["requested_at"]), _e(r["who"]), " ".join(f"<code>{_e(i)}</code>" for i in r["ids"]),
                     _e(r["why"]), f'<span class="state {_e(r["state"])}">{_e(r["state"])}</span>',
                     _e(r["error"] or ", ".join(r["landing_files"])), f'<code>{_e(r["next_step"])}</code>']
                    for r in p.get("requests", [])]
        parts.append(f'<h3>{_e(p["interval"])} (version {_e(p["version"])}): {p["total"]} quarantined, '
                     f'{p["released"]} released</h3><p>{counts}</p>'
                     + _table(("id", "reason", "stage", "detail", "text (masked)", "release"), samples)
                     + ("<h4>Release requests</h4>" + _table(("requested", "by", "ids", "why", "state", "result",
                                                              "next step"), requests, id_=f"requests-{p['interval']}")
                        if requests else ""))
    script = (f"<script>async function release(b){{const why=prompt('Why release this record?');if(!why)return;"
              f"const r=await consolePost('{_e(base)}/api/quarantine/{_e(domain)}/release',"
              "{interval: b.dataset.interval, ids: [b.dataset.id], why: why});if(r.ok)location.reload();}</script>"
              if can else "")
    return ("<p>Counts by reason; sample text is masked at render time (records can be quarantined before PII "
            "masking). Release asks for a record to go back through governance: the request stays <em>pending</em> "
            "until the partition's next ingestion run releases it (as <code>ops quarantine release</code>, under the "
            "ingestion identity) and ingests it; to do that now, rerun the partition with the command shown.</p>"
            + totals + "".join(parts) + script)


def review_index_html(queues: Sequence[Mapping[str, Any]], *, base: str, domain: str) -> str:
    rows = [[f'<a href="{_e(base)}/review?{urlencode({"queue": q["queue"]})}">{_e(q["interval"])}</a>',
             _e(q["version"]), str(q["queued"]), str(q["reviewed"])] for q in queues]
    return _table(("partition", "version", "queued", "reviewed"), rows, id_="queues") if rows else \
        f"<p>No review queue for {_e(domain)} yet.</p>"


def review_html(data: Mapping[str, Any], *, user: ConsoleUser, base: str) -> str:
    progress = data["progress"]
    can = user.can(REVIEW)
    labels = data["labels"]
    keys = " ".join(f"<kbd>{i + 1}</kbd> {_e(label)}" for i, label in enumerate(labels[:9]))
    items = []
    for item in data["items"]:
        done = item["review_label"] is not None
        choice = "".join(
            f'<button class="label" data-label="{_e(label)}" onclick="choose(this)">{i + 1}. {_e(label)}</button> '
            for i, label in enumerate(labels)) if can else ""
        items.append(
            f'<div class="item{" done" if done else ""}" data-id="{_e(item["id"])}">'
            f'<div><code>{_e(item["id"])}</code> · predicted <b>{_e(item["predicted_label"])}</b> '
            f'({_n(item["confidence"], 2)}, {_e(item["reason"])}) · review: '
            f'<b class="review">{_e(item["review_label"] or "-")}</b></div>'
            f'<p class="text">{_e(item["text"])}</p>{choice}</div>')
    help_ = (f"<p>Keys: {keys}; <kbd>j</kbd>/<kbd>k</kbd> next/previous item. Each label is stored at once as a "
             "create-only reviews file, exactly as <code>review import</code> does.</p>" if can else
             "<p>You can read this queue; labelling needs a reviewer role.</p>")
    script = ""
    if can:
        script = ("<script>const LABELS=" + json.dumps(labels) + ";const QUEUE=" + json.dumps(data["queue"])
                  + ";const URL_=" + json.dumps(f"{base}/api/review/labels") + ";" + """
let items=[...document.querySelectorAll('.item')];let cur=Math.max(0,items.findIndex(e=>!e.classList.contains('done')));
function focusItem(i){items.forEach(e=>e.classList.remove('current'));cur=Math.min(Math.max(i,0),items.length-1);
  if(items[cur]){items[cur].classList.add('current');items[cur].scrollIntoView({block:'nearest'});}}
async function label(el,lab){const r=await consolePost(URL_,{queue:QUEUE,labels:{[el.dataset.id]:lab}});
  if(!r.ok)return;el.querySelector('.review').textContent=lab;el.classList.add('done');
  const p=r.data.progress;document.getElementById('reviewed').textContent=p.reviewed;
  document.getElementById('required').textContent=p.required;
  const next=items.findIndex((e,i)=>i>cur&&!e.classList.contains('done'));focusItem(next<0?cur:next);}
function choose(b){const el=b.closest('.item');focusItem(items.indexOf(el));label(el,b.dataset.label);}
document.addEventListener('keydown',e=>{if(e.target.tagName==='INPUT'||e.target.tagName==='TEXTAREA')return;
  if(e.key==='j')focusItem(cur+1);else if(e.key==='k')focusItem(cur-1);
  else if(/^[1-9]$/.test(e.key)&&LABELS[+e.key-1]&&items[cur])label(items[cur],LABELS[+e.key-1]);});
focusItem(cur);</script>""")
    return (f'<p>{_e(data["domain"])} {_e(data["interval"])} (version {_e(data["version"])}): required set = '
            f'ceil(share · n) plus every prediction below {_e(data["low_confidence_below"])} confidence '
            f'({progress["low_confidence"]} low-confidence, {progress["sampled"]} sampled).</p>'
            f'<p id="progress"><b id="reviewed">{progress["reviewed"]}</b> of <b id="required">{progress["required"]}'
            f'</b> reviewed</p>{help_}' + "".join(items) + script)


def approvals_html(pending: Sequence[Mapping[str, Any]], *, user: ConsoleUser, base: str,
                   answered: Sequence[Mapping[str, Any]] = ()) -> str:
    can = user.can(APPROVE)
    blocks = []
    for p in pending:
        buttons = ""
        if can:
            ident = _e(json.dumps({k: p[k] for k in ("dag_id", "run_id", "task_id", "map_index", "domain")
                                   if k in p}))
            buttons = (f"<button class=\"approve\" data-ti='{ident}' onclick=\"decide(this,'Approve')\">Approve</button> "
                       f"<button class=\"reject\" data-ti='{ident}' onclick=\"decide(this,'Reject')\">Reject</button>")
        blocks.append(f'<div class="item approval"><h3>{_e(p["subject"])}</h3><p><code>{_e(p["dag_id"])}</code> run '
                      f'<code>{_e(p["run_id"])}</code> · {_e(p["task_id"])}[{_e(p["map_index"])}]</p>'
                      f'<pre style="white-space:pre-wrap">{_e(p["body"])}</pre>{buttons}</div>')
    done = _table(("subject", "decision", "by", "at"),
                  [[_e(a["subject"]), _e(a["decision"]), _e(a["by"]), _e(a["at"])] for a in answered], id_="answered")
    script = ("<script>async function decide(b,d){const t=JSON.parse(b.dataset.ti);"
              f"const r=await consolePost('{_e(base)}/api/approvals/decide',{{...t,decision:d}});"
              "if(r.ok)setTimeout(()=>location.reload(),500);}</script>") if can else ""
    return ("<p>Promotions of domains in <code>artifacts.require_approval</code> wait here (and in Airflow's "
            "Required actions) with the gate's numbers and the model card.</p>"
            + ("".join(blocks) if blocks else "<p id=\"no-pending\">No promotion waits for approval.</p>")
            + "<h2>Answered</h2>" + done + script)


def cost_html(comparison: CostComparison, *, base: str) -> str:
    i = comparison.inputs
    fields = (("price_per_call", "cloud price per call ($)", i.price_per_call, "0.0001"),
              ("calls_per_year", "calls per year", int(i.calls_per_year), "1"),
              ("years", "years", i.years, "1"),
              ("local_investment", "local investment ($)", i.local_investment, "1000"),
              ("local_yearly", "local operations per year ($)", i.local_yearly, "1000"),
              ("requests_per_second", "measured throughput (req/s per deployment)", i.requests_per_second, "0.01"),
              ("utilisation", "utilisation", i.utilisation, "0.05"))
    inputs = "".join(f'<label>{_e(label)} <input type="number" name="{name}" value="{_e(value)}" step="{step}">'
                     "</label><br>" for name, label, value, step in fields)
    be = comparison.break_even_calls_per_year
    guide = _table(("", "cloud", "local"), [
        ["initial investment", f'${GUIDE["cloud"]["investment"]:,}', f'${GUIDE["local"]["investment"]:,}'],
        ["yearly operations", f'${GUIDE["cloud"]["yearly"]:,}', f'${GUIDE["local"]["yearly"]:,}'],
        ["three-year total", f'${GUIDE["cloud"]["three_years"]:,}', f'${GUIDE["local"]["three_years"]:,}']])
    return (f'<form method="get" action="{_e(base)}/cost">{inputs}<button>Compute</button></form>'
            f'<table id="totals"><tr><th></th><th>cloud</th><th>local</th></tr>'
            f'<tr><td>total over {i.years} year(s)</td><td class="num" id="cloud-total">${comparison.cloud_total:,.0f}'
            f'</td><td class="num" id="local-total">${comparison.local_total:,.0f}</td></tr></table>'
            f'<p id="break-even">Break-even: local pays off above <b>'
            f'{"-" if be is None else f"{be / 1e6:,.2f} M"}</b> calls a year over {i.years} year(s); cheaper at '
            f'{i.calls_per_year:,.0f} calls a year: <b>{_e(comparison.cheaper)}</b>. Local capacity '
            f'{comparison.capacity_per_deployment / 1e6:,.0f} M calls a year per deployment '
            f'({comparison.deployments} needed).</p>'
            f'<div id="cost-plot">{cost_svg(comparison)}</div><h2>The guide\'s table</h2>{guide}'
            "<p>The guide concludes local pays off above 12 million calls a year; a price of $0.0115 a call "
            "reproduces that over three years.</p>")
