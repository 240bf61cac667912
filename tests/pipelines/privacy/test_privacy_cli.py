"""``python -m pipelines privacy ledger|budget|release``: tables from a local store, clean errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from pipelines.privacy import PrivacyConfig, plan_run, reserve_budget
from pipelines.privacy.cli import add_parser, main
from pipelines.storage import LocalObjectStore
from privacy_helpers import Q, STEPS, WEEKS

ROOT = Path(__file__).resolve().parents[3]
SMALL = {"epsilon": 1.0, "weekly_share": 0.5, "weekly_epsilon": 0.5, "monthly_epsilon": 0.5}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config whose store is a local folder, with one granted weekly run of medical on WEEKS[0]."""
    raw = yaml.safe_load((ROOT / "config" / "pipeline.yaml").read_text())
    raw["storage"]["endpoint_url"] = f"file://{tmp_path}"
    raw["domains"]["medical"]["privacy"] = SMALL
    raw["domains"]["product_reviews"].pop("privacy", None)  # a domain without a budget: the CLI must say so
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    for key in ("PIPELINE_S3_ENDPOINT_URL", "PIPELINE_BUCKET", "PIPELINE_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    store = LocalObjectStore(tmp_path / raw["storage"]["bucket"])
    config = PrivacyConfig(**SMALL)
    plan = plan_run(config=config, store=store, domain="medical", kind="weekly", partitions=[WEEKS[0]],
                    sample_rate=Q, steps=STEPS)
    reserve_budget(config=config, store=store, plan=plan, run_id="weekly-1")
    return path, plan


def test_ledger_table_lists_each_run_with_its_status(setup, capsys):
    path, plan = setup
    assert main(["ledger", "--domain", "medical", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["run_id", "kind", "status", "partitions", "epsilon", "sigma", "q", "steps", "(done)",
                              "created_at"]
    assert out[3].split()[:8] == ["weekly-1", "weekly", "granted", WEEKS[0], f"{plan.epsilon:.4f}",
                                  f"{plan.noise_multiplier:.4f}", "0.1", "20"]
    assert len(out) == 4


def test_budget_json_reports_spent_and_remaining_per_partition(setup, capsys):
    path, plan = setup
    assert main(["budget", "--domain", "medical", "--config", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["partitions"]
    assert (report["epsilon"], row["partition"], row["runs"]) == (1.0, WEEKS[0], ["weekly-1"])
    assert row["epsilon"] == row["weekly_epsilon"] == plan.epsilon
    assert row["remaining"] == pytest.approx(1.0 - plan.epsilon)
    assert main(["budget", "--domain", "medical", "--config", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[3].split() == [WEEKS[0], "1", f"{plan.epsilon:.4f}/0.5", "0.0000/0.5", f"{plan.epsilon:.4f}/1",
                                f"{1 - plan.epsilon:.4f}"]


def test_release_refuses_a_granted_run(setup, capsys):
    path, _plan = setup
    assert main(["release", "--domain", "medical", "--config", str(path), "--run-id", "weekly-1",
                 "--reason", "test"]) == 2
    assert "already granted" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["budget", "--domain", "nope"], "error: unknown domain or model slot 'nope'"),
    (["budget", "--domain", "product_reviews"], "error: privacy.epsilon is required"),
    (["release", "--domain", "medical", "--run-id", "ghost", "--reason", "x"], "error: no ledger entry"),
])
def test_user_mistakes_print_an_error_and_exit_2(setup, capsys, argv, message):
    path, _plan = setup
    assert main([*argv, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_add_parser_registers_one_subcommand_that_reads_the_top_level_config(setup, capsys):
    path, _plan = setup
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(path), "privacy", "ledger", "--domain", "medical", "--json"])
    assert args.func(args) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["run_id"], row["status"], row["decision"]["decision"]) == ("weekly-1", "granted", "granted")
