"""The console plugin's FastAPI app (in-process, auth manager stubbed to a user and role): pages render,
viewers get no action buttons and 403 from the endpoints, reviewers label, approvers roll back."""

from __future__ import annotations

import pytest

from _console_world import PHONE, world_copy

pytestmark = pytest.mark.airflow  # imports the api-server's security module


class _User:
    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role

    def get_name(self) -> str:
        return self.name


@pytest.fixture(scope="module")
def _cache(tmp_path_factory):
    return tmp_path_factory.mktemp("console-plugin-world")


@pytest.fixture
def client(tmp_path, _cache, monkeypatch):
    from fastapi.testclient import TestClient

    import airflow.api_fastapi.core_api.security as security
    import mlops_console

    config, store, world = world_copy(tmp_path / "store", _cache)
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", config.storage.endpoint_url)
    monkeypatch.delenv("PIPELINE_BUCKET", raising=False)
    users = {"ann": _User("ann", "admin"), "rob": _User("rob", "op"), "vic": _User("vic", "viewer")}

    async def resolve(token):
        if token not in users:
            from fastapi import HTTPException

            raise HTTPException(401, "Not authenticated")
        return users[token]

    monkeypatch.setattr(security, "resolve_user_from_token", resolve)

    def as_user(name: str) -> TestClient:
        c = TestClient(mlops_console.app)
        c.headers["Authorization"] = f"Bearer {name}"
        return c

    return as_user, store, world


def test_every_page_renders_and_raw_pii_never_reaches_the_page(client):
    as_user, _store, world = client
    c = as_user("vic")
    for path in ("/privacy?domain=legal", "/models?domain=legal", "/quarantine?domain=legal", "/review?domain=legal",
                 f"/review?queue={world['queue']}", "/cost", f"/models/legal/{world['artifacts'][1]}"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert PHONE not in r.text
    assert "12.03 M" in c.get("/cost").text
    assert "[PHONE_1]" in c.get("/quarantine?domain=legal").text


def test_viewer_sees_no_action_buttons_and_gets_403(client):
    as_user, _store, world = client
    c = as_user("vic")
    assert 'class="rollback"' not in c.get("/models?domain=legal").text
    assert 'class="release"' not in c.get("/quarantine?domain=legal").text
    assert 'class="label"' not in c.get(f"/review?queue={world['queue']}").text
    assert c.post("/api/review/labels", json={"queue": world["queue"], "labels": {"LG-1": "contract"}}).status_code == 403
    assert c.post("/api/models/legal/rollback", json={"why": "x"}).status_code == 403
    assert c.post("/api/quarantine/legal/release", json={"interval": "x", "ids": ["y"], "why": "z"}).status_code == 403
    assert as_user("nobody").get("/privacy").status_code == 401


def test_reviewer_labels_and_sees_progress_approver_rolls_back(client):
    as_user, _store, world = client
    rob = as_user("rob")
    assert 'class="label"' in rob.get(f"/review?queue={world['queue']}").text
    for n, rid in enumerate(("LG-1", "LG-2", "LG-3"), start=1):
        r = rob.post("/api/review/labels", json={"queue": world["queue"], "labels": {rid: "contract"}})
        assert r.status_code == 200 and r.json()["progress"]["reviewed"] == n
    assert rob.post("/api/models/legal/rollback", json={"why": "x"}).status_code == 403
    r = as_user("ann").post("/api/models/legal/rollback", json={"why": "bad answers"})
    assert r.status_code == 200 and r.json()["action"] == "rollback" and r.json()["who"] == "console:ann"
    assert as_user("ann").get("/api/models/legal").json()["production"]["version"] == "1.0"


def test_reviewer_release_becomes_a_pending_request_with_the_next_step_on_the_page(client):
    as_user, store, _world = client
    rob = as_user("rob")
    part = rob.get("/api/quarantine/legal").json()["partitions"][0]
    sample = next(s for s in part["samples"] if s["reason"] == "clean.pattern.test_message")
    r = rob.post("/api/quarantine/legal/release", json={"interval": part["interval"], "ids": [sample["id"]],
                                                        "why": "false positive"})
    assert r.status_code == 200, r.text
    rerun = f"python -m pipelines ops rerun --domain legal --interval {part['interval']}"
    assert (r.json()["state"], r.json()["who"], r.json()["next_step"]) == ("pending", "console:rob", rerun)
    assert rerun in r.json()["message"] and store.exists(r.json()["key"])
    page = rob.get("/quarantine?domain=legal").text
    assert 'class="state pending"' in page and rerun in page and "requested (pending)" in page
    again = rob.post("/api/quarantine/legal/release", json={"interval": part["interval"], "ids": [sample["id"]],
                                                            "why": "again"})
    assert again.status_code == 400 and "already in a pending request" in again.json()["detail"]
