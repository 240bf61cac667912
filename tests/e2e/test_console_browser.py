"""The operations console in a real browser: pinned ``playwright`` driving Debian's ``/usr/bin/chromium`` (headless,
never ``playwright install``) against a real ``airflow api-server`` with the console plugin, SimpleAuthManager users
logged in through the login page (/auth/login). The store is the console world of tests/_console_world.py on a local
folder (``file://``) that the api-server's console reads and writes.

Set ``CONSOLE_SCREENSHOTS=docs/console`` to retake the screenshots of docs/console/ from the live server.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from _console_world import PHONE, world_copy
from console_server import PASSWORDS, ROOT, start_api_server, stop_api_server

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db"),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")]
PAGES = ("privacy", "models", "quarantine", "review", "approvals", "cost")


@pytest.fixture(scope="module")
def live(airflow_db, tmp_path_factory):
    """(server, store, world): an api-server whose console reads a fresh copy of the console world."""
    config, store, world = world_copy(tmp_path_factory.mktemp("console-browser-store"),
                                      tmp_path_factory.mktemp("console-browser-world"))
    proc, server = start_api_server(airflow_db, env_overrides={
        "PIPELINE_S3_ENDPOINT_URL": config.storage.endpoint_url, "PIPELINE_BUCKET": None})
    yield server, store, world
    stop_api_server(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


def login(browser, server, user: str):
    """A browser page signed in as ``user`` through the SimpleAuthManager login form."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/auth/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_function("() => document.cookie !== undefined && !location.pathname.startsWith('/auth/login')",
                           timeout=60000)
    return page


def _shoot(page, name: str) -> None:
    if folder := os.environ.get("CONSOLE_SCREENSHOTS"):
        page.screenshot(path=str(ROOT / folder / f"{name}.png"), full_page=True)


def test_every_page_opens_for_an_admin_and_shows_no_raw_pii(live, browser):
    server, _store, world = live
    page = login(browser, server, "admin")
    for name in PAGES:
        response = page.goto(f"{server.url}/console/{name}?domain=legal")
        assert response.status == 200, name
        assert page.locator("h1").first.is_visible(), name
        assert PHONE not in page.content(), name
        _shoot(page, name)
    assert "[PHONE_1]" in page.goto(f"{server.url}/console/quarantine?domain=legal").text()
    assert page.locator("button.release").count() > 0 and page.locator("button.rollback").count() == 0
    assert page.goto(f"{server.url}/console/models?domain=legal").status == 200
    assert page.locator("button.rollback").count() > 0
    page.goto(f"{server.url}/console/cost")
    assert "12.03 M" in page.content()
    page.goto(f"{server.url}/console/approvals")  # read from Airflow's HITL API: nothing pending here
    assert page.locator("#no-pending").is_visible()


def test_reviewer_labels_three_items_with_clicks_and_keys_and_sees_progress(live, browser):
    server, _store, world = live
    page = login(browser, server, "op")
    page.goto(f"{server.url}/console/review?queue={world['queue']}")
    reviewed = page.locator("#reviewed")
    start = int(reviewed.text_content())
    page.locator(".item").nth(0).locator("button.label").first.click()
    page.wait_for_function(f"() => document.getElementById('reviewed').textContent === '{start + 1}'")
    page.locator(".item").nth(1).locator("button.label").nth(1).click()
    page.wait_for_function(f"() => document.getElementById('reviewed').textContent === '{start + 2}'")
    page.keyboard.press("j")  # the keyboard shortcuts: next item, then label 3
    page.keyboard.press("3")
    page.wait_for_function(f"() => document.getElementById('reviewed').textContent === '{start + 3}'")
    _shoot(page, "review")
    page.reload()  # the labels are stored records, not page state
    assert int(page.locator("#reviewed").text_content()) == start + 3
    assert page.locator(".item.done").count() == 3


def test_approver_rolls_back_from_the_models_page_and_production_changes(live, browser):
    server, _store, _world = live
    page = login(browser, server, "admin")
    page.goto(f"{server.url}/console/models?domain=legal")
    status, before = server.call("GET", "/console/api/models/legal")
    assert status == 200
    button = page.locator("button.rollback").first
    target = button.get_attribute("data-artifact")
    page.once("dialog", lambda dialog: dialog.accept("bad answers in the browser test"))
    with page.expect_navigation():
        button.click()
    status, after = server.call("GET", "/console/api/models/legal")
    assert after["production"]["artifact_id"] == target != before["production"]["artifact_id"]
    assert after["history"][0]["action"] == "rollback" and after["history"][0]["who"] == "console:admin"


def test_viewer_sees_no_action_buttons_and_gets_403(live, browser):
    server, _store, world = live
    page = login(browser, server, "viewer")
    for path in ("models?domain=legal", "quarantine?domain=legal", f"review?queue={world['queue']}"):
        assert page.goto(f"{server.url}/console/{path}").status == 200
        assert page.locator("button.rollback, button.release, button.label").count() == 0, path
    status = page.evaluate("""async () => (await fetch('/console/api/models/legal/rollback', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({why: 'x'})})).status""")
    assert status == 403
    assert server.call("POST", "/console/api/review/labels", user="viewer",
                       body={"queue": world["queue"], "labels": {"LG-4": "contract"}})[0] == 403
