"""``privacy migrate``: a ledger written per partition by the current code becomes per record, idempotently,
without losing a charge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.privacy import (
    PrivacyConfig,
    RecordSet,
    plan_run,
    read_ledger,
    record_report,
    reserve_budget,
    untrained_records,
)
from pipelines.privacy.cli import main
from pipelines.privacy.migrate import migrate_ledger, partition_record
from pipelines.storage import LocalObjectStore
from privacy_helpers import Q, STEPS, WEEKS, digest, publish_partition

ROOT = Path(__file__).resolve().parents[3]
LEDGER = "privacy/ledger/medical/"
SMALL = {"epsilon": 1.0, "weekly_share": 0.5, "weekly_epsilon": 0.5, "monthly_epsilon": 0.5}
EARLY, LATE = "2026-01-01T00:00:00+00:00", "2099-01-01T00:00:00+00:00"
W1, W2, W3 = WEEKS


def _legacy_run(config, store, run_id, kind, partitions):
    """A reservation exactly as the current (per-partition) code writes it."""
    plan = plan_run(config=config, store=store, domain="medical", kind=kind, partitions=partitions, sample_rate=Q,
                    steps=STEPS)
    return reserve_budget(config=config, store=store, plan=plan, run_id=run_id)


def _legacy_store(config, store):
    """Weeks 2 and 3 published and trained weekly; then week 1 backfilled takes x from week 3 (re-published)."""
    publish_partition(store, domain="medical", interval=W2, names=["a", "b"], committed_at=EARLY)
    v3 = publish_partition(store, domain="medical", interval=W3, names=["x", "d"], committed_at=EARLY)
    w2 = _legacy_run(config, store, "weekly-w2", "weekly", [W2])
    w3 = _legacy_run(config, store, "weekly-w3", "weekly", [W3])
    publish_partition(store, domain="medical", interval=W1, names=["f", "x"], committed_at=LATE)
    publish_partition(store, domain="medical", interval=W3, names=["d"], committed_at=LATE)
    return w2, w3, v3


def _keys(store):
    return sorted(o.key for o in store.list(LEDGER))


def test_migrate_charges_each_legacy_run_to_the_records_of_the_versions_it_read(config, store):
    w2, w3, v3 = _legacy_store(config, store)
    before = _keys(store)
    dry = migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                         artifacts_prefix="models", dry_run=True)
    assert [(s.run_id, s.action, s.records, s.versions) for s in dry] == [
        ("weekly-w2", "would migrate", 2, {W2: [dry[0].versions[W2][0]]}),
        ("weekly-w3", "would migrate", 2, {W3: [v3]})]
    assert _keys(store) == before  # a dry run writes nothing

    steps = migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                           artifacts_prefix="models")
    assert [(s.action, s.source) for s in steps] == [("migrated", "versions committed before the run")] * 2
    records = read_ledger(config=config, store=store, domain="medical")
    assert [r.records_ref["count"] for r in records] == [2, 2]
    # No charge is lost: each record carries exactly its legacy run's ε; x stays charged to weekly-w3.
    by_runs = {s.group.runs: (s.group.count, s.epsilon) for s in record_report(config=config, store=store,
                                                                              domain="medical")}
    assert by_runs == {("weekly-w2",): (2, w2.epsilon), ("weekly-w3",): (2, w3.epsilon)}
    candidates = RecordSet.of(digest(n) for n in ["f", "x", "a", "b", "d"])
    assert untrained_records(config=config, store=store, domain="medical", candidates=candidates) == \
        RecordSet.of([digest("f")])

    # Idempotent: a second run writes nothing and reports the earlier migration.
    after = _keys(store)
    again = migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                           artifacts_prefix="models")
    assert [s.action for s in again] == ["already migrated"] * 2 and _keys(store) == after
    # The reservations themselves are untouched (create-only); migration only added objects.
    assert set(before) <= set(after)


def test_a_version_pinned_by_an_artifact_manifest_is_used_exactly(config, store):
    publish_partition(store, domain="medical", interval=W3, names=["x", "d"], committed_at=EARLY)
    pinned = publish_partition(store, domain="medical", interval=W3, names=["d", "e", "g"], committed_at=EARLY)
    _legacy_run(config, store, "weekly-w3", "weekly", [W3])
    manifest = {"artifact_id": "1" * 16, "domain": "medical", "version": "1.0", "kind": "weekly",
                "task": "classification", "parent": None, "created_at": "2026-10-20T00:00:00Z",
                "data": {"partitions": [{"interval": W3, "version": pinned}]},
                "dp": {"ledger_key": f"{LEDGER}weekly-w3.json"}}
    store.put(f"models/medical/artifacts/{'1' * 16}/manifest.json", json.dumps(manifest).encode())
    [step] = migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                            artifacts_prefix="models")
    assert (step.records, step.source, step.versions) == (3, "artifact manifest", {W3: [pinned]})


def test_without_a_version_before_the_run_every_version_is_charged_and_a_series_interval_is_a_pseudo_record(
        config, store):
    publish_partition(store, domain="medical", interval=W3, names=["x"], committed_at=LATE)
    publish_partition(store, domain="medical", interval=W3, names=["y"], committed_at=LATE)
    _legacy_run(config, store, "weekly-w3", "weekly", [W3, W1])  # W1 has no curated versions
    [step] = migrate_ledger(config=config, store=store, domain="medical", curated_prefix="curated",
                            artifacts_prefix="models")
    assert step.source == "every version (none before the run), partition pseudo-record"
    [record] = read_ledger(config=config, store=store, domain="medical")
    stored = RecordSet.decode(store.get(LEDGER + record.records_ref["object"]))
    assert stored == RecordSet.of([digest("x"), digest("y"), partition_record("medical", W1)])


@pytest.fixture
def cli_config(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "config" / "pipeline.yaml").read_text())
    raw["storage"]["endpoint_url"] = f"file://{tmp_path}"
    raw["domains"]["medical"]["privacy"] = SMALL
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    for key in ("PIPELINE_S3_ENDPOINT_URL", "PIPELINE_BUCKET", "PIPELINE_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    return path, LocalObjectStore(tmp_path / raw["storage"]["bucket"]), raw["storage"]["curated_prefix"]


def test_cli_migrate_dry_run_then_migrate(cli_config, capsys):
    path, store, _curated = cli_config
    config = PrivacyConfig(**SMALL)
    _legacy_store(config, store)
    before = _keys(store)
    assert main(["migrate", "--domain", "medical", "--config", str(path), "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["run_id"], s["action"], s["records"]) for s in report["medical"]] == \
        [("weekly-w2", "would migrate", 2), ("weekly-w3", "would migrate", 2)]
    assert _keys(store) == before
    assert main(["migrate", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "medical:" and out[3].split()[:3] == ["weekly-w2", "migrated", "2"]
    assert main(["migrate", "--domain", "medical", "--config", str(path), "--json"]) == 0
    assert {s["action"] for s in json.loads(capsys.readouterr().out)["medical"]} == {"already migrated"}


def test_cli_records_reports_each_record_group_after_migration(cli_config, capsys):
    path, store, _curated = cli_config
    config = PrivacyConfig(**SMALL)
    _w2, w3, _v3 = _legacy_store(config, store)
    assert main(["records", "--domain", "medical", "--config", str(path)]) == 2
    assert "privacy migrate --domain medical" in capsys.readouterr().err
    assert main(["migrate", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["records", "--domain", "medical", "--config", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(g["runs"], g["records"]) for g in report["groups"]] == [(["weekly-w2"], 2), (["weekly-w3"], 2)]
    assert report["groups"][1]["epsilon"] == w3.epsilon and report["subjects"] == []


def test_a_forecaster_slots_legacy_run_is_charged_its_series_intervals_not_the_curated_rows(config, store):
    """finance_forecast read each week's series: its pseudo-records are what weekly planning now excludes."""
    from pipelines.privacy import untrained_records

    publish_partition(store, domain="finance", interval=W1, names=["row"], committed_at=EARLY)
    plan = plan_run(config=config, store=store, domain="finance_forecast", kind="weekly", partitions=[W1],
                    sample_rate=Q, steps=STEPS)
    reserve_budget(config=config, store=store, plan=plan, run_id="weekly-fc-1")
    [step] = migrate_ledger(config=config, store=store, domain="finance_forecast", curated_prefix="curated",
                            artifacts_prefix="models", data_domain="finance")
    assert (step.action, step.records, step.source) == ("migrated", 1, "partition pseudo-record")
    series = RecordSet.of([partition_record("finance", W1), partition_record("finance", W2)])
    assert untrained_records(config=config, store=store, domain="finance_forecast", candidates=series) == \
        RecordSet.of([partition_record("finance", W2)])


def test_cli_migrate_on_a_fresh_store_does_nothing_and_succeeds(cli_config, capsys):
    """scripts/demo.sh runs ``privacy migrate`` before every training: on a fresh store it must be a no-op."""
    path, store, _curated = cli_config
    assert main(["migrate", "--config", str(path), "--json"]) == 0
    assert all(steps == [] for steps in json.loads(capsys.readouterr().out).values())
    assert list(store.list("")) == []
