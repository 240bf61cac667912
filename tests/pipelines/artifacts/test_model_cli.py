"""``python -m pipelines model ...`` against a local store configured by a small YAML file."""

from __future__ import annotations

import argparse
import json

import pytest

from _artifacts_helpers import flip_last_byte, make_folder
from pipelines.artifacts import current_production, push_artifact
from pipelines.artifacts.cli import add_parser
from pipelines.cli import main
from pipelines.config import ArtifactsConfig, ConfigError, build_stage_config, load_config
from pipelines.storage import LocalObjectStore

CONFIG = """
storage:
  bucket: mlops-test
  endpoint_url: file://{root}
ingest:
  sources:
    - {{name: files, kind: files, prefix: "{{domain}}"}}
artifacts:
  max_drop: 0.05
security:
  model_approvers: [carol, ci]
domains:
  legal:
    task: classification
  finance:
    task: classification
    training:
      max_drop: 0.10
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("PIPELINE_BUCKET", raising=False)
    monkeypatch.setenv("USER", "carol")
    path = tmp_path / "pipeline.yaml"
    path.write_text(CONFIG.format(root=tmp_path / "s3"))
    store = LocalObjectStore(tmp_path / "s3" / "mlops-test")

    def push(name, macro_f1, domain="legal", version="1.0"):
        folder = make_folder(tmp_path / "models", name, seed=name, metrics={"macro_f1": macro_f1}, domain=domain,
                             version=version)
        return push_artifact(store, folder, domain=domain)

    def run(*argv):
        return main(["--config", str(path), "model", *argv])

    return store, push, run


def test_promote_gate_history_rollback_show_verify(env, capsys):
    store, push, run = env
    old, good, bad = push("old", 0.8), push("good", 0.7608, version="1.1"), push("bad", 0.7592, version="1.2")
    assert run("promote", "--domain", "legal", "--artifact", old.artifact_id, "--why", "first") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["number"], record["who"], record["why"], record["gate"]["passed"]) == (1, "carol", "first", True)

    assert run("promote", "--domain", "legal", "--artifact", bad.artifact_id, "--why", "weekly") == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["gate"]["relative_change"] == -0.051
    assert "error: gate refused" in captured.err and "production unchanged" in captured.err
    assert current_production(store, "legal").artifact_id == old.artifact_id

    assert run("promote", "--domain", "legal", "--artifact", good.artifact_id, "--why", "weekly", "--who", "ci") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["number"], record["who"], record["gate"]["relative_change"]) == (2, "ci", -0.049)

    assert run("promote", "--domain", "legal", "--artifact", bad.artifact_id, "--why", "hotfix", "--force") == 0
    assert json.loads(capsys.readouterr().out)["gate"]["forced"] is True

    assert run("rollback", "--domain", "legal", "--why", "bad answers") == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["number"], record["action"], record["artifact_id"], record["who"]) == \
        (4, "rollback", good.artifact_id, "carol")

    assert run("history", "--domain", "legal", "--limit", "2") == 0
    assert [r["number"] for r in json.loads(capsys.readouterr().out)] == [4, 3]
    assert run("show", "--domain", "legal") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["production"]["number"], shown["artifact"]["artifact_id"], shown["artifact"]["version"]) == \
        (4, good.artifact_id, "1.1")
    assert run("list", "--domain", "legal") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((a["artifact_id"], a["production"]) for a in listed) == \
        sorted([(old.artifact_id, False), (good.artifact_id, True), (bad.artifact_id, False)])

    assert run("verify", "--domain", "legal") == 0
    assert capsys.readouterr().out.startswith(f"ok: legal {good.artifact_id} (version 1.1): 3 file(s)")
    flip_last_byte(store, f"{old.root}/model.safetensors")
    assert run("verify", "--domain", "legal", "--artifact", old.artifact_id) == 1
    assert "verification failed" in capsys.readouterr().err
    assert run("rollback", "--domain", "legal", "--to", old.artifact_id, "--why", "x") == 1
    assert "model.safetensors" in capsys.readouterr().err
    assert current_production(store, "legal").number == 4


def test_domain_max_drop_override(env, capsys):
    store, push, run = env
    for domain in ("finance", "legal"):
        base = push(f"base-{domain}", 0.8, domain=domain)
        assert run("promote", "--domain", domain, "--artifact", base.artifact_id, "--why", "first") == 0
    worse = {d: push(f"worse-{d}", 0.74, domain=d, version="1.1").artifact_id for d in ("finance", "legal")}
    capsys.readouterr()
    # -7.5%: within finance's 10% (domains.finance.training.max_drop), beyond legal's 5% (artifacts.max_drop)
    assert run("promote", "--domain", "finance", "--artifact", worse["finance"], "--why", "weekly") == 0
    assert json.loads(capsys.readouterr().out)["gate"]["max_drop"] == 0.1
    assert run("promote", "--domain", "legal", "--artifact", worse["legal"], "--why", "weekly") == 1
    assert json.loads(capsys.readouterr().out)["gate"] == {
        "passed": False, "reason": "refused: macro_f1 0.74 vs production 0.8: -7.50% (higher is better; "
                                   "allowed drop 5.00%)", "relative_change": -0.075, "metric": "macro_f1",
        "candidate_value": 0.74, "production_value": 0.8, "max_drop": 0.05, "higher_is_better": True,
        "forced": False, "trivial_metric": "", "trivial_value": None, "margin": None}  # no trivial baseline recorded
    assert run("promote", "--domain", "legal", "--artifact", worse["legal"], "--why", "w", "--max-drop", "0.08") == 0
    assert current_production(store, "legal").artifact_id == worse["legal"]


@pytest.mark.parametrize("argv, message", [
    (["show", "--domain", "nope"], "unknown domain or model slot 'nope'"),
    (["promote", "--domain", "legal", "--artifact", "xyz", "--why", "w"], "not 16 lowercase hex"),
    (["promote", "--domain", "legal", "--artifact", "0123456789abcdef", "--why", "w"], "no artifact 0123456789abcdef"),
    (["verify", "--domain", "legal"], "legal has no production model"),
    (["rollback", "--domain", "legal", "--why", "w"], "nothing to roll back"),
])
def test_user_mistakes_print_an_error_not_a_traceback(env, capsys, argv, message):
    _, _, run = env
    code = run(*argv)
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("error: ") and message in err and "Traceback" not in err


def test_add_parser_registers_one_top_level_command():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "rollback", "--domain", "legal", "--why", "w", "--to", "0123456789abcdef"])
    assert (args.command, args.model_command, args.to, args.who) == ("model", "rollback", "0123456789abcdef", None)
    assert callable(args.func)


def test_config_validation(tmp_path):
    assert ArtifactsConfig() == ArtifactsConfig(prefix="models", max_drop=0.05, cache_dir="")
    with pytest.raises(ConfigError, match=r"artifacts.max_drop=1.5"):
        build_stage_config(ArtifactsConfig, "artifacts", {"max_drop": 1.5})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['maxdrop'\]"):
        build_stage_config(ArtifactsConfig, "artifacts", {"maxdrop": 0.1})
    with pytest.raises(ConfigError, match="artifacts.prefix='/models'"):
        ArtifactsConfig(prefix="/models")
    path = tmp_path / "p.yaml"
    path.write_text(CONFIG.format(root=tmp_path))
    config = load_config(path, environ={"PIPELINE__ARTIFACTS__MAX_DROP": "0.02"})
    assert config.artifacts.max_drop == 0.02


def test_only_model_approvers_promote_or_roll_back(env, capsys):
    store, push, run = env
    ref = push("m", 0.8)
    assert run("promote", "--domain", "legal", "--artifact", ref.artifact_id, "--why", "w", "--who", "mallory") == 2
    assert "mallory" in capsys.readouterr().err
    assert current_production(store, "legal") is None
    assert run("promote", "--domain", "legal", "--artifact", ref.artifact_id, "--why", "w") == 0  # carol
    assert run("rollback", "--domain", "legal", "--why", "w", "--who", "mallory") == 2
