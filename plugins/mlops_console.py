"""The operations console as an Airflow 3 plugin: a FastAPI app mounted in the api-server at ``/console`` plus a
navigation entry. Thin: it authenticates through the auth manager (the UI's JWT cookie or a bearer token), maps
the user's roles (pipelines.console.access) and calls pipelines.console with the console's own store identity.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

BASE = "/console"
IDENTITY = "console"  # pipelines/identities.py: writes models/, review/, audit/ only
app = FastAPI(title="Operations console", docs_url=None, redoc_url=None)


def _context():
    from pipelines.config import load_config
    from pipelines.storage import open_store

    config = load_config()
    return config, open_store(config, identity=IDENTITY)


def _token(request: Request) -> str | None:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)


async def _user(request: Request):
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    from pipelines.console import console_user

    user = await resolve_user_from_token(_token(request))
    roles = getattr(user, "role", None) or [getattr(r, "name", r) for r in getattr(user, "roles", []) or []]
    return console_user(user.get_name(), roles)


def _errors(exc: Exception) -> JSONResponse:
    if isinstance(exc, PermissionError):
        return JSONResponse({"detail": str(exc)}, status_code=403)
    return JSONResponse({"detail": str(exc)}, status_code=400)


def _page(request: Request, page: str, title: str, body: str, user) -> HTMLResponse:
    from pipelines.console.html import layout

    return HTMLResponse(layout(base=BASE, page=page, title=title, user=user, body=body))


@app.get("/")
async def index() -> RedirectResponse:
    return RedirectResponse(f"{BASE}/privacy")


@app.get("/privacy", response_class=HTMLResponse)
async def privacy(request: Request, domain: str = "legal"):
    from pipelines.console import html, reads

    user = await _user(request)
    config, store = _context()
    data = reads.privacy_page(config=config, store=store, domain=domain)
    return _page(request, "privacy", f"Privacy budgets: {domain}",
                 html.domain_picker(base=BASE, page="privacy", domains=reads.domains(config), current=domain)
                 + html.privacy_html(data), user)


@app.get("/models", response_class=HTMLResponse)
async def models(request: Request, domain: str = "legal"):
    from pipelines.console import html, reads

    user = await _user(request)
    config, store = _context()
    data = reads.models_page(config=config, store=store, domain=domain)
    return _page(request, "models", f"Models: {domain}",
                 html.domain_picker(base=BASE, page="models", domains=reads.domains(config), current=domain)
                 + html.models_html(data, user=user, base=BASE), user)


@app.get("/models/{domain}/{artifact_id}", response_class=HTMLResponse)
async def card(request: Request, domain: str, artifact_id: str):
    from pipelines.console import html, reads

    user = await _user(request)
    config, store = _context()
    data = reads.model_card(config=config, store=store, domain=domain, artifact_id=artifact_id)
    return _page(request, "models", f"Model card: {domain} {data['version']}", html.card_html(data), user)


@app.get("/quarantine", response_class=HTMLResponse)
async def quarantine(request: Request, domain: str = "legal"):
    from pipelines.console import html, reads

    user = await _user(request)
    config, store = _context()
    data = reads.quarantine_page(config=config, store=store, domain=domain)
    return _page(request, "quarantine", f"Quarantine: {domain}",
                 html.domain_picker(base=BASE, page="quarantine", domains=reads.domains(config), current=domain)
                 + html.quarantine_html(data, user=user, base=BASE), user)


@app.get("/review", response_class=HTMLResponse)
async def review(request: Request, domain: str = "legal", queue: str = ""):
    from pipelines.console import html, reads

    user = await _user(request)
    config, store = _context()
    if queue:
        data = reads.review_page(config=config, store=store, queue=queue)
        return _page(request, "review", f"Review: {data['domain']} {data['interval']}",
                     html.review_html(data, user=user, base=BASE), user)
    queues = reads.review_queues(store=store, domain=domain)
    return _page(request, "review", f"Human review: {domain}",
                 html.domain_picker(base=BASE, page="review", domains=reads.domains(config), current=domain)
                 + html.review_index_html(queues, base=BASE, domain=domain), user)


@app.get("/cost", response_class=HTMLResponse)
async def cost(request: Request):
    from pipelines.console import html
    from pipelines.console.cost import CostInputs, compare_costs

    user = await _user(request)
    values: dict[str, Any] = {}
    for name, kind in (("price_per_call", float), ("calls_per_year", float), ("years", int),
                       ("local_investment", float), ("local_yearly", float), ("requests_per_second", float),
                       ("utilisation", float)):
        if request.query_params.get(name):
            values[name] = kind(request.query_params[name])
    try:
        comparison = compare_costs(CostInputs(**values))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return _page(request, "cost", "Cost: cloud vs local", html.cost_html(comparison, base=BASE), user)


@app.get("/api/{page}/{domain}")
async def api_read(request: Request, page: str, domain: str):
    from pipelines.console import reads

    await _user(request)
    config, store = _context()
    readers = {"privacy": reads.privacy_page, "models": reads.models_page, "quarantine": reads.quarantine_page}
    if page not in readers:
        raise HTTPException(404, f"no page {page!r}; pages: {sorted(readers)}")
    return readers[page](config=config, store=store, domain=domain)


@app.post("/api/review/labels")
async def api_labels(request: Request, body: dict = Body(...)):
    from pipelines.console import actions, reads

    user = await _user(request)
    config, store = _context()
    try:
        result = actions.label_items(config=config, store=store, user=user, queue=str(body.get("queue", "")),
                                     labels=dict(body.get("labels") or {}))
    except (PermissionError, ValueError) as exc:
        return _errors(exc)
    page = reads.review_page(config=config, store=store, queue=result.queue)
    return {**result.to_dict(), "progress": page["progress"], "message": f"stored {result.reviews_key}"}


@app.post("/api/models/{domain}/rollback")
async def api_rollback(request: Request, domain: str, body: dict = Body(...)):
    from pipelines.console import actions

    user = await _user(request)
    config, store = _context()
    try:
        record = actions.rollback_model(config=config, store=store, user=user, domain=domain,
                                        why=str(body.get("why", "")), to_artifact_id=body.get("to"))
    except (PermissionError, ValueError) as exc:
        return _errors(exc)
    return {**record.to_dict(), "message": f"rolled back to {record.version}"}


@app.post("/api/quarantine/{domain}/release")
async def api_release(request: Request, domain: str, body: dict = Body(...)):
    from pipelines.console import actions

    user = await _user(request)
    config, store = _context()
    corrected = body.get("corrected")
    try:
        if corrected is not None and not isinstance(corrected, dict):
            raise ValueError("corrected: give the fixed record as one JSON object")
        request = actions.release_quarantine(config=config, store=store, user=user, domain=domain,
                                             interval=str(body.get("interval", "")), ids=list(body.get("ids") or []),
                                             why=str(body.get("why", "")), corrected=corrected)
    except (PermissionError, ValueError) as exc:
        return _errors(exc)
    # The console may not write landing/: the partition's next ingestion run executes the request.
    return {**request.to_dict(), "message": f"release requested ({request.key}); the next ingestion run of "
                                            f"{request.interval} releases it: {request.next_step}"}


async def _hitl(request: Request, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    """Airflow's own HITL REST API on this api-server, called with the signed-in user's token: Airflow decides
    who may read or answer (its DAG permissions), and the answer resumes the task exactly as Required actions does."""
    import httpx

    origin = f"{request.url.scheme}://{request.url.netloc}"
    async with httpx.AsyncClient(base_url=origin, timeout=30) as client:
        r = await client.request(method, f"/api/v2{path}", json=body,
                                 headers={"Authorization": f"Bearer {_token(request)}"})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"detail": r.text}


def _approval_row(d: dict) -> dict:
    ti = d["task_instance"]
    return {"subject": d["subject"], "body": d.get("body") or "", "dag_id": ti["dag_id"], "run_id": ti["dag_run_id"],
            "task_id": ti["task_id"], "map_index": ti["map_index"],
            "domain": ti.get("rendered_map_index") or str(ti["map_index"]),
            "decision": ", ".join(d.get("chosen_options") or []),
            "by": (d.get("responded_by_user") or {}).get("name", ""), "at": d.get("responded_at") or ""}


@app.get("/approvals", response_class=HTMLResponse)
async def approvals(request: Request):
    from pipelines.console import html

    user = await _user(request)
    status, data = await _hitl(request, "GET", "/dags/~/dagRuns/~/hitlDetails?limit=100")
    if status != 200:
        raise HTTPException(status, data.get("detail", "cannot read the human-in-the-loop requests"))
    rows = [_approval_row(d) for d in data["hitl_details"]
            if d["task_instance"]["task_id"].endswith("approve_promotion")]
    return _page(request, "approvals", "Approvals",
                 html.approvals_html([r for r in rows if not r["at"]], user=user, base=BASE,
                                     answered=[r for r in rows if r["at"]]), user)


@app.post("/api/approvals/decide")
async def api_decide(request: Request, body: dict = Body(...)):
    """Answer a pending promotion approval (approvers): Airflow's HITL API first, then the console's audit entry."""
    from pipelines.console import actions

    user = await _user(request)
    config, store = _context()
    run = {k: body.get(k) for k in ("dag_id", "run_id", "task_id", "map_index")}
    decision = str(body.get("decision", ""))
    try:
        actions.require_approver(user=user, decision=decision)
    except (PermissionError, ValueError) as exc:
        return _errors(exc)
    status, answer = await _hitl(
        request, "PATCH", f"/dags/{run['dag_id']}/dagRuns/{run['run_id']}/taskInstances/{run['task_id']}/"
                          f"{run['map_index']}/hitlDetails", {"chosen_options": [decision], "params_input": {}})
    if status != 200:
        return JSONResponse({"detail": answer.get("detail", answer)}, status_code=status)
    audit = actions.audit_approval(config=config, store=store, user=user, domain=str(body.get("domain", "")),
                                   decision=decision, run=run, why=str(body.get("why", "")))
    return {"decision": decision, "audit": audit, "message": f"{decision}d; audit {audit}"}


class MlopsConsolePlugin(AirflowPlugin):
    name = "mlops_console"
    fastapi_apps = [{"app": app, "url_prefix": BASE, "name": "Operations console"}]
    external_views = [{"name": "Operations console", "href": f"{BASE}/privacy", "destination": "nav",
                       "category": "browse", "url_route": "mlops_console"}]
