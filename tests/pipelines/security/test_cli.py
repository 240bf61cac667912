"""``python -m pipelines security``: exit codes and errors without tracebacks."""

from __future__ import annotations

import json
import stat

import pytest

from pipelines.security.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("PIPELINE__SECURITY__KEYRING_PATH", str(tmp_path / "keys" / "keyring.json"))
    return tmp_path


def test_keyring_rotation_shred_and_audit(env, capsys):
    assert main(["security", "init-keyring"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE((env / "keys" / "keyring.json").stat().st_mode) == 0o600
    assert main(["security", "init-keyring"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["security", "key-age"]) == 0
    assert json.loads(capsys.readouterr().out)["too_old"] is False
    assert main(["security", "rotate-kek", "--retire-old", "--who", "ops"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["retired"] == [created["active"]] and rotated["errors"] == []
    assert main(["security", "shred", "--domain", "legal", "--interval", "2026-10-04_2026-10-11",
                 "--who", "dpo", "--why", "request 5"]) == 0
    capsys.readouterr()
    assert main(["security", "audit", "--action", "key_rotation", "--action", "crypto_shred"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["action"], e["who"]) for e in entries] == [("key_rotation", "ops"), ("crypto_shred", "dpo")]


def test_user_mistakes_exit_2(env, capsys):
    assert main(["security", "audit-prune", "--older-than-days", "30"]) == 2
    assert "at least 180 days" in capsys.readouterr().err
    assert main(["security", "purge", "--domain", "legal", "--who", "a", "--why", "b"]) == 2
    assert "record_id and/or text_sha256" in capsys.readouterr().err
    assert main(["security", "rotate-kek"]) == 2  # no keyring yet
    assert "init-keyring" in capsys.readouterr().err
    assert main(["security", "purge", "--domain", "nope", "--id", "x", "--who", "a", "--why", "b"]) == 2
    assert "unknown domain" in capsys.readouterr().err
