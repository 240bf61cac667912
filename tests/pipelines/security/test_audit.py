"""The append-only audit log: create-only entries, filters, retention."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipelines.security.audit import AuditError, audit_hook, prune_audit, read_audit, write_audit
from pipelines.storage import LocalObjectStore

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path)


def test_entry_layout_and_fields(store):
    key = write_audit(store, action="promotion", who="alice", what="legal 2.3", why="gate passed",
                      details={"artifact_id": "abc"}, now=T0)
    assert key.startswith("audit/2026/01/05/20260105T080000000000Z-") and key.endswith(".json")
    assert json.loads(store.get(key)) == {"action": "promotion", "who": "alice", "when": "2026-01-05T08:00:00.000000Z",
                                          "what": "legal 2.3", "why": "gate passed", "details": {"artifact_id": "abc"}}
    # Entries at the same instant never overwrite each other.
    other = write_audit(store, action="promotion", who="alice", what="legal 2.3", why="again", now=T0)
    assert other != key and len(list(store.list("audit/"))) == 2


def test_required_fields(store):
    with pytest.raises(AuditError, match="'why' is empty"):
        write_audit(store, action="rollback", who="bob", what="legal", why=" ")
    with pytest.raises(AuditError, match="lower-case name"):
        write_audit(store, action="Drop Table", who="bob", what="x", why="y")
    with pytest.raises(AuditError, match="not JSON-able"):
        write_audit(store, action="rollback", who="bob", what="x", why="y", details={"o": object()})


def test_filters(store):
    write_audit(store, action="promotion", who="alice", what="legal 2.3", why="w", now=T0)
    write_audit(store, action="rollback", who="bob", what="legal 2.2", why="w", now=T0 + dt.timedelta(days=1))
    write_audit(store, action="budget_change", who="alice", what="medical epsilon", why="w", now=T0 + dt.timedelta(days=2))
    assert [e["action"] for e in read_audit(store)] == ["promotion", "rollback", "budget_change"]
    assert [e["what"] for e in read_audit(store, who="alice")] == ["legal 2.3", "medical epsilon"]
    assert [e["action"] for e in read_audit(store, action=("rollback", "promotion"))] == ["promotion", "rollback"]
    assert [e["action"] for e in read_audit(store, since="2026-01-06", until="2026-01-07")] == ["rollback"]
    assert [e["action"] for e in read_audit(store, since="2026-01-06")] == ["rollback", "budget_change"]
    assert [e["who"] for e in read_audit(store, what_contains="legal")] == ["alice", "bob"]


def test_hook_takes_a_dict(store):
    hook = audit_hook(store, who="artifacts")
    key = hook({"action": "promotion", "what": "legal 1.1", "why": "gate", "artifact_id": "a1", "gate": {"drop": 0.01}})
    entry = json.loads(store.get(key))
    assert (entry["who"], entry["details"]) == ("artifacts", {"artifact_id": "a1", "gate": {"drop": 0.01}})
    # A promotion record as pipelines.artifacts passes it.
    key = hook({"event": "model.promote", "action": "promote", "domain": "legal", "version": "1.2",
                "artifact_id": "0123abcd", "who": "alice", "when": "2026-01-05T08:00:00Z", "why": "gate passed"})
    entry = json.loads(store.get(key))
    assert (entry["action"], entry["who"], entry["what"], entry["why"]) == ("promote", "alice", "legal 1.2 0123abcd",
                                                                           "gate passed")
    assert entry["details"] == {"event": "model.promote", "domain": "legal", "version": "1.2",
                                "artifact_id": "0123abcd", "event_when": "2026-01-05T08:00:00Z"}
    with pytest.raises(AuditError, match="'action'"):
        hook({"what": "x"})


def test_prune_respects_retention(store):
    old = write_audit(store, action="rollback", who="bob", what="x", why="y", now=T0)
    young = write_audit(store, action="rollback", who="bob", what="x", why="y", now=T0 + dt.timedelta(days=100))
    with pytest.raises(AuditError, match="at least 180 days"):
        prune_audit(store, older_than_days=179)
    with pytest.raises(AuditError, match="at least 365 days"):
        prune_audit(store, older_than_days=200, retention_days=365)
    assert prune_audit(store, older_than_days=180, now=T0 + dt.timedelta(days=200)) == 1
    assert not store.exists(old) and store.exists(young)
