"""finance's forecaster slot (finance_forecast) through the same plan -> DP run -> artifact -> gate path."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.artifacts import current_production, fetch_artifact, load_ref, verify_artifact
from pipelines.config import ConfigError, load_config
from pipelines.finetune import (
    RunRefused, RunRequest, build_domain_base, domains_to_train, gate_metric, plan_run, promote_run, run_domain,
    train_run,
)
from pipelines.finetune.evaluation import FORECAST_EVAL_SEED
from pipelines.finetune.run import lineage_key
from pipelines.forecast import (
    forecast_examples, forecast_slots, interval_series, model_slot, series_digest, series_seed,
)
from pipelines.partition import Interval
from pipelines.privacy import budget_report, read_ledger
from pipelines.publish import commit_version, partition_prefix
from pipelines.serialize import parquet_bytes
from pipelines.storage import LocalObjectStore
from pipelines.modeling import load_model
from pipelines.train.models import make_sample_series

WEEKS = [Interval.parse("2026-10-04_2026-10-11"), Interval.parse("2026-10-11_2026-10-18")]
SLOT = "finance_forecast"
SERIES, LENGTH, WINDOW, TAIL = 12, 60, 16, 6


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_training):
    # tiny_training, with the forecaster's own sizes and its defaults for max_length / eval_percent.
    for key, value in {"PIPELINE_S3_ENDPOINT_URL": f"file://{tmp_path / 'store'}",
                       "PIPELINE__TRAINING__BATCH_SIZE": "4",
                       "PIPELINE__TRAINING__FORECAST_SERIES": str(SERIES),
                       "PIPELINE__TRAINING__FORECAST_LENGTH": str(LENGTH),
                       "PIPELINE__TRAINING__FORECAST_WINDOW": str(WINDOW),
                       "PIPELINE__TRAINING__FORECAST_EVAL_TAIL": str(TAIL)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PIPELINE__TRAINING__MAX_LENGTH")
    monkeypatch.delenv("PIPELINE__TRAINING__EVAL_PERCENT")
    config = load_config()
    store = LocalObjectStore(tmp_path / "store" / config.storage.bucket)
    return config, store


def commit_week(config, store, interval: Interval) -> str:
    """A committed curated finance interval without records (the forecaster reads only the commit, not the rows)."""
    prefix = partition_prefix(config.storage.curated_prefix, "finance", interval.name)
    version = f"v{interval.start:%Y%m%d}"
    store.put(f"{prefix}/v-{version}/data.parquet", parquet_bytes([]))
    return commit_version(store, prefix, {"version": version}).version


def request(kind: str, n: int, **extra) -> RunRequest:
    return RunRequest(domain=SLOT, kind=kind, run_id=f"{kind}-{SLOT}-{n}", requested_by="test", **extra)


def test_slots_resolve_to_their_domain(env):
    config, _store = env
    assert forecast_slots(config=config) == [SLOT]
    slot = model_slot(config=config, name=SLOT)
    assert (slot.name, slot.domain, slot.task, slot.is_forecast) == (SLOT, "finance", "forecast", True)
    legal = model_slot(config=config, name="legal")
    assert (legal.name, legal.domain, legal.task, legal.is_forecast) == ("legal", "legal", "classification", False)
    with pytest.raises(ConfigError, match="domains.legal.training.forecast: true"):
        model_slot(config=config, name="legal_forecast")
    with pytest.raises(ConfigError, match="finance_forecast"):
        model_slot(config=config, name="weather")
    assert gate_metric(config=config, domain=SLOT) == ("mae", False)
    assert gate_metric(config=config, domain="finance") == ("accuracy", True)


def test_one_training_window_per_series_and_the_tail_held_out(env):
    name = WEEKS[0].name
    values = interval_series(name, series=SERIES, length=LENGTH)
    assert values == interval_series(name, series=SERIES, length=LENGTH)  # deterministic per interval
    assert values != interval_series(WEEKS[1].name, series=SERIES, length=LENGTH)
    assert series_seed(name) == int(__import__("hashlib").sha256(name.encode()).hexdigest()[:15], 16)
    train, held = forecast_examples([({"interval": name}, values)], window=WINDOW, eval_tail=TAIL)
    # One example per series (the privacy unit), its target before the tail; every tail window held out.
    assert [e["id"].split("t")[0] for e in train] == [f"{name}/s{i}" for i in range(SERIES)]
    assert len(held) == SERIES * TAIL
    assert [e["id"] for e in held[:TAIL]] == [f"{name}/s0t{end}" for end in range(LENGTH - TAIL, LENGTH)]
    for example in train:
        series, end = example["id"].rsplit("t", 1)
        index, end = int(series.rsplit("/s", 1)[1]), int(end)
        assert WINDOW <= end < LENGTH - TAIL
        assert example["window"] == values[index][end - WINDOW:end] and example["target"] == values[index][end]


def test_weekly_forecaster_run_promoted_ledgered_against_finance_budget(env, tmp_path):
    config, store = env
    version = commit_week(config, store, WEEKS[0])
    # finance's classifier has no training records in these weeks: only the forecaster has work.
    assert domains_to_train(config=config, store=store, kind="weekly") == [SLOT]
    base = build_domain_base(config=config, store=store, domain=SLOT, who="test", size="tiny")
    assert base["task"] == "forecast" and base["root"] == f"models/base/{SLOT}/{base['artifact_id']}"

    first = run_domain(config=config, store=store, request=request("weekly", 1), who="test")
    assert first.promoted is True and first.version == "1.0" and first.gate["metric"] == "mae"
    assert first.gate["higher_is_better"] is False
    ref = load_ref(store, SLOT, first.artifact_id)
    assert ref.root == f"models/{SLOT}/artifacts/{first.artifact_id}"
    manifest = verify_artifact(store, ref)
    assert (manifest["task"], manifest["domain"], manifest["kind"]) == ("forecast", SLOT, "weekly")
    assert manifest["parent"] == base["artifact_id"]
    # Published: interval and version; the exact series digest and count stay in the private lineage.
    digest = series_digest(interval_series(WEEKS[0].name, series=SERIES, length=LENGTH))
    assert manifest["data"]["partitions"] == [{"interval": WEEKS[0].name, "version": version}]
    lineage = json.loads(store.get(lineage_key(SLOT, first.run_id)))
    assert lineage["partitions"] == [{"interval": WEEKS[0].name, "version": version, "digest": digest, "rows": SERIES}]
    metrics = manifest["metrics"]
    # Evaluated on generated public series, none of them a series it trained on (the units stay whole).
    assert metrics["evaluation"] == "public" and metrics["evaluation_set"] == f"generated:seed={FORECAST_EVAL_SEED}"
    assert "train_examples" not in metrics and metrics["eval_examples"] == metrics["n"] == SERIES * TAIL
    public = make_sample_series(FORECAST_EVAL_SEED, SERIES, length=LENGTH)
    trained_on = interval_series(WEEKS[0].name, series=SERIES, length=LENGTH)
    assert not {tuple(s) for s in public} & {tuple(s) for s in trained_on}
    assert metrics["split"] == metrics["trivial"]["split"] and metrics["trivial"]["name"] == "last value"
    for name in ("mae", "naive_mae"):  # the MAE is reported against the naive last-value baseline
        assert math.isfinite(metrics[name]) and metrics[name] > 0, name
        assert math.isfinite(metrics["baseline"][name]), name
    assert metrics["mae_vs_naive"] == round(metrics["mae"] / metrics["naive_mae"], 4)
    assert metrics["baseline"]["artifact_id"] == base["artifact_id"]
    for name in ("model.safetensors", "config.json", "model_card.md", "training_curve.svg", "epsilon.svg"):
        assert name in manifest["files"], name

    # Ledger under the slot, checked against finance's budget; finance's own ledger is untouched.
    finance = config.for_domain("finance").require_privacy()
    dp = manifest["dp"]
    assert dp["ledger_key"] == f"privacy/ledger/{SLOT}/weekly-{SLOT}-1.json"
    assert dp["unit"] == "series" and dp["steps"] == first.steps == SERIES // 4
    assert 0 < dp["epsilon"] <= finance.weekly_epsilon + 1e-9
    records = read_ledger(config=finance, store=store, domain=SLOT)
    assert [(r.entry.run_id, r.status, r.entry.partitions) for r in records] == [
        (f"weekly-{SLOT}-1", "completed", (WEEKS[0].name,))]
    assert read_ledger(config=finance, store=store, domain="finance") == []
    [spent] = budget_report(config=finance, store=store, domain=SLOT)
    assert spent.partition == WEEKS[0].name and list(spent.runs) == [f"weekly-{SLOT}-1"]
    assert spent.epsilon <= finance.epsilon
    assert current_production(store, SLOT).artifact_id == first.artifact_id

    # The promoted artifact loads and forecasts.
    [next_value] = load_model(fetch_artifact(store, ref, tmp_path / "fetched")).forecast(
        [[100.0 + i for i in range(WINDOW)]])
    assert math.isfinite(next_value)

    # No new week: nothing listed, the run is refused and nothing is reserved.
    assert domains_to_train(config=config, store=store, kind="weekly", only=SLOT) == []
    with pytest.raises(RunRefused, match="nothing to train on"):
        plan_run(config=config, store=store, request=request("weekly", 2))
    assert len(read_ledger(config=finance, store=store, domain=SLOT)) == 1

    # A new week: only it is read, from production, a minor version gated on MAE vs production.
    commit_week(config, store, WEEKS[1])
    plan = plan_run(config=config, store=store, request=request("weekly", 3))
    assert [p.interval for p in plan.partitions] == [WEEKS[1].name]
    assert plan.task == "forecast" and plan.start.source == "production"
    assert plan.start.artifact_id == first.artifact_id
    trained = train_run(config=config, store=store, plan=plan)
    assert trained.version == "1.1" and trained.baseline["artifact_id"] == first.artifact_id
    promoted = promote_run(config=config, store=store, trained=trained, who="test")
    assert promoted.gate["metric"] == "mae" and promoted.promoted is promoted.gate["passed"]
    assert promoted.gate["production_value"] == trained.baseline["mae"]

    # finance's shares bound the slot: a per-run epsilon above finance's weekly share is refused.
    commit_week(config, store, Interval.parse("2026-10-18_2026-10-25"))
    with pytest.raises(RunRefused, match="exceeds its share"):
        plan_run(config=config, store=store, request=request("weekly", 4, epsilon=finance.epsilon))
    # The monthly retrain reads every week's series again, from the base model: a major version.
    monthly = run_domain(config=config, store=store, request=request("monthly", 1), who="test")
    manifest = verify_artifact(store, load_ref(store, SLOT, monthly.artifact_id))
    assert monthly.version == "2.0" and manifest["parent"] == base["artifact_id"]
    assert len(manifest["data"]["partitions"]) == 3
    assert json.loads(store.get(lineage_key(SLOT, monthly.run_id)))["train_examples"] == 3 * SERIES
    spent = {s.partition: sorted(s.runs) for s in budget_report(config=finance, store=store, domain=SLOT)}
    assert spent == {WEEKS[0].name: [f"monthly-{SLOT}-1", f"weekly-{SLOT}-1"],
                     WEEKS[1].name: [f"monthly-{SLOT}-1", f"weekly-{SLOT}-3"],
                     "2026-10-18_2026-10-25": [f"monthly-{SLOT}-1"]}


def test_cli_builds_the_base_and_trains_the_slot(env, capsys):
    from pipelines.train.cli import main

    config, store = env
    commit_week(config, store, WEEKS[0])
    assert main(["build-domain-base", "--domain", SLOT, "--size", "tiny", "--who", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "forecast"
    assert main(["domain", "--domain", SLOT, "--run-id", "weekly-cli-1", "--who", "test", "--log-every", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["domain"], out["task"], out["version"], out["promoted"]) == (SLOT, "forecast", "1.0", True)
    assert main(["domain", "--domain", "legal_forecast", "--who", "test"]) == 2
    assert "error: legal_forecast: domain legal has no forecaster" in capsys.readouterr().err
