"""Approvals end to end: a promotion of a domain in ``artifacts.require_approval`` waits in Airflow's
human-in-the-loop ("Required actions") until a person answers through the HITL REST API of a real api-server.

The DAG runs with ``dag.test()`` in this process (main thread; no scheduler); the api-server is a subprocess sharing
the same metadata DB, and the person is a thread (the rejection through the HITL REST API). ``dag.test()`` keeps
``approve_promotion`` parked in ``awaiting_input`` until the api-server records the answer, then runs (approve) or
skips (reject) ``promote_model``. The approval is given in a browser (playwright + Debian chromium) on the
console's Approvals page, which answers through the same HITL API; the models page then shows the change.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from console_server import start_api_server, stop_api_server
from e2e_helpers import UTC
from test_console_browser import _shoot, browser, login  # noqa: F401 - the browser fixture
from test_training_dags import published_week, run_dag, task_states

pytestmark = pytest.mark.usefixtures("airflow_db")

APPROVAL = "train_domain.approve_promotion"


@pytest.fixture
def api_server(airflow_db, s3_bucket):
    """An api-server whose console reads this test's bucket (PIPELINE_BUCKET is set by ``s3_bucket``)."""
    proc, server = start_api_server(airflow_db)
    yield server
    stop_api_server(proc)


def _answering(server, dag_id: str, decide, timeout: float = 900) -> tuple[threading.Thread, dict]:
    """A thread that waits for the open HITL request of ``dag_id`` and answers it with ``decide(detail)``.

    ``dag.test()`` must run in the main thread (it installs signal handlers), so the person is the thread.
    """
    seen: dict = {}

    def person():
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                status, body = server.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails")
                assert status == 200, body
                open_ = [d for d in body["hitl_details"] if d["responded_at"] is None]
                if open_:
                    seen["detail"] = open_[0]
                    seen["answers"] = decide(open_[0])
                    return
                time.sleep(2)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            seen["error"] = exc
            for d in server.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails")[1].get("hitl_details", []):
                if d["responded_at"] is None:  # never leave dag.test() waiting forever
                    _answer(server, d, "Reject")

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    return thread, seen


def _answer(server, detail: dict, option: str, *, user: str = "admin") -> tuple[int, dict]:
    ti = detail["task_instance"]
    return server.call("PATCH", f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                                f"{ti['task_id']}/{ti['map_index']}/hitlDetails",
                       user=user, body={"chosen_options": [option], "params_input": {}})


def test_rejected_promotion_leaves_production_untouched_approved_one_is_promoted(
        s3_bucket, tiny_training, api_server, browser, monkeypatch):
    from pipelines.artifacts import current_production, list_artifacts
    from pipelines.finetune import build_domain_base

    monkeypatch.setenv("PIPELINE__ARTIFACTS__REQUIRE_APPROVAL", "legal")
    config, store = published_week(("legal",))
    build_domain_base(config=config, store=store, domain="legal", who="test", size="tiny")

    # Weekly fine-tune: the request shows the gate's numbers and the model card; a viewer may not answer; reject.
    thread, seen = _answering(api_server, "domain_finetune", lambda d: [
        _answer(api_server, d, "Approve", user="viewer")[0], _answer(api_server, d, "Reject")[0]])
    run = run_dag("domain_finetune", {"domain": "legal", "epsilon": None, "dry_run": False},
                  dt.datetime(2026, 10, 11, 1, tzinfo=UTC))
    thread.join(60)
    assert "error" not in seen, seen
    detail = seen["detail"]
    assert seen["answers"] == [403, 200]
    assert detail["task_instance"]["task_id"] == APPROVAL and detail["options"] == ["Approve", "Reject"]
    assert detail["subject"].startswith("Promote legal model 1.0? (accuracy ")
    assert "| metric | accuracy (higher is better) |" in detail["body"]
    assert "| gate | passed:" in detail["body"] and "# legal classification model 1.0" in detail["body"]
    assert str(run.state) == "success", task_states(run)
    assert task_states(run) == {"list_domains": ["success"], "train_domain.plan_finetune": ["success"],
                                "train_domain.train_model": ["success"], APPROVAL: ["skipped"],
                                "train_domain.promote_model": ["skipped"]}
    assert current_production(store, "legal") is None
    assert {ref.version for ref in list_artifacts(store, "legal")} == {"1.0"}
    page = login(browser, api_server, "admin")  # the console's models page shows no production yet
    page.goto(f"{api_server.url}/console/models?domain=legal")
    assert page.locator("#production").inner_text() == "No model in production yet."

    # The monthly retrain of the same domain asks again; an approver approves on the console's Approvals page (a
    # browser of its own in the person's thread: playwright's sync objects belong to the thread that made them).
    def approve_in_browser(detail: dict) -> list:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
            try:
                own = login(chromium, api_server, "admin")
                own.goto(f"{api_server.url}/console/approvals")
                block = own.locator(".item.approval", has_text=detail["subject"])
                shown = [block.count(), "| metric | accuracy (higher is better) |" in block.inner_text()]
                _shoot(own, "approvals")  # CONSOLE_SCREENSHOTS=docs/console: the page with a pending approval
                with own.expect_navigation():
                    block.locator("button.approve").click()
                shown.append(own.locator("#answered", has_text="Approve").count())
                return shown
            finally:
                chromium.close()

    thread, seen = _answering(api_server, "monthly_full_retrain", approve_in_browser)
    run = run_dag("monthly_full_retrain", {"domain": "legal", "epsilon": None, "dry_run": False},
                  dt.datetime(2026, 11, 1, 1, tzinfo=UTC))
    thread.join(120)
    assert "error" not in seen, seen
    assert seen["answers"] == [1, True, 1]
    version = seen["detail"]["subject"].split(" model ")[1].split("?")[0]
    assert str(run.state) == "success", task_states(run)
    assert task_states(run)[APPROVAL] == ["success"] and task_states(run)["train_domain.promote_model"] == ["success"]
    record = current_production(store, "legal")
    assert record is not None and record.action == "promote" and record.version == version
    assert record.gate["passed"] is True
    page.goto(f"{api_server.url}/console/models?domain=legal")  # and the console shows the change
    assert page.locator("#production").inner_text().startswith(f"Production: {version} {record.artifact_id} (promote")
    viewer = login(browser, api_server, "viewer")  # a viewer sees the answered approval, no buttons, 403
    assert viewer.goto(f"{api_server.url}/console/approvals").status == 200
    assert viewer.locator("button.approve, button.reject").count() == 0
    assert api_server.call("POST", "/console/api/approvals/decide", user="viewer",
                           body={**{k: seen["detail"]["task_instance"][k] for k in ("dag_id", "task_id", "map_index")},
                                 "run_id": seen["detail"]["task_instance"]["dag_run_id"], "decision": "Approve"})[0] == 403
