"""Subjects and erasure through the real flow (local store): a ``subject_id`` at ingestion is curated only as its
hash, a weekly run keeps at most k records per subject and reports the subject's ε, a purge by subject lists the
promoted artifacts trained on it, and the next model's card says what was erased since its parent."""

from __future__ import annotations

import json

import pytest

from pipelines.artifacts import load_ref, verify_artifact
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import RunRequest, build_domain_base, run_domain
from pipelines.partition import Interval
from pipelines.privacy import (
    hash_subject, planned_records, read_ledger, record_runs, subject_report,
)
from pipelines.publish import partition_prefix, read_committed_rows
from pipelines.security.purge import purge_record
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, process_partition

from _evaluation import upload_evaluation_sets

DOMAIN = "medical"
WEEKS = [Interval.parse("2026-10-04_2026-10-11"), Interval.parse("2026-10-11_2026-10-18")]
SAMPLE = PROJECT_ROOT / "data" / "sample" / "landing" / DOMAIN
PATIENTS = ("patient-0", "patient-1", "patient-2")


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_training):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path / 'store'}")
    config = load_config()
    return config, LocalObjectStore(tmp_path / "store" / config.storage.bucket)


def land(store, interval: Interval, *, subjects: bool) -> None:
    """The sample's week, every other record given one of three patients as its subject."""
    n = 0
    for folder in sorted(SAMPLE.iterdir()):
        if not interval.start.isoformat() <= folder.name < interval.end.isoformat():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix != ".jsonl":
                store.put(f"landing/{DOMAIN}/{folder.name}/{path.name}", path.read_bytes())
                continue
            lines = []
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else None
                if record is not None and subjects and n % 2 == 0:
                    record["subject_id"] = PATIENTS[(n // 2) % len(PATIENTS)]
                n += record is not None
                lines.append(json.dumps(record) if record is not None else line)
            store.put(f"landing/{DOMAIN}/{folder.name}/{path.name}", ("\n".join(lines) + "\n").encode())


def rows(config, store, interval: Interval) -> list[dict]:
    return read_committed_rows(store, partition_prefix(config.storage.curated_prefix, DOMAIN, interval.name))[1]


def weekly(config, store, n: int):
    return run_domain(config=config, store=store, who="test",
                      request=RunRequest(domain=DOMAIN, kind="weekly", run_id=f"weekly-{DOMAIN}-{n}",
                                         requested_by="test"))


def test_subjects_are_bounded_reported_and_purged_with_the_artifacts_trained_on_them(env):
    config, store = env
    upload_evaluation_sets(config, store, only=(DOMAIN,))  # what `sample load` does: the gate's public set
    privacy = config.for_domain(DOMAIN).require_privacy()
    assert privacy.max_records_per_subject == 1  # medical's seed bound
    land(store, WEEKS[0], subjects=True)
    assert process_partition(config=config, store=store, part=PartitionRef(domain=DOMAIN, interval=WEEKS[0]))
    curated = rows(config, store, WEEKS[0])
    hashed = {hash_subject(p, domain=DOMAIN).hex(): p for p in PATIENTS}
    assert {r["subject_sha256"] for r in curated} == {*hashed, None}
    # The raw id is curated nowhere (only its per-domain hash).
    for info in store.list("curated/"):
        data = store.get(info.key)
        text = json.dumps(read_parquet_rows(data)) if info.key.endswith(".parquet") else data.decode("utf-8", "replace")
        assert "patient-" not in text, info.key

    build_domain_base(config=config, store=store, domain=DOMAIN, who="test", size="tiny")
    first = weekly(config, store, 1)
    assert first.promoted is True
    trained = set(planned_records(config=privacy, store=store, domain=DOMAIN, run_id=f"weekly-{DOMAIN}-1").hexes())
    by_subject = {}
    for r in curated:
        if r["content_sha256"] in trained and r["subject_sha256"]:
            by_subject.setdefault(r["subject_sha256"], []).append(r["content_sha256"])
    # At most one record per subject in the run; records without a subject are not bounded.
    assert {s: len(hs) for s, hs in by_subject.items()} == {s: 1 for s in hashed}
    [run] = record_runs(config=privacy, store=store, domain=DOMAIN,
                        records=read_ledger(config=privacy, store=store, domain=DOMAIN))
    assert {s.hex(): [r.hex() for r in rs] for s, rs in run.subjects.subjects().items()} == by_subject
    # The subject's ε (group privacy) is in the ledger, the plan and the artifact.
    worst = subject_report(config=privacy, store=store, domain=DOMAIN)[0].epsilon
    manifest = verify_artifact(store, load_ref(store, DOMAIN, first.artifact_id))
    assert manifest["privacy"]["subject_epsilon"] == pytest.approx(worst)
    assert manifest["privacy"]["max_records_per_subject"] == 1
    assert manifest["privacy"]["purged_since_parent"] == 0

    # Erasure by subject: every record of patient-1 goes, and the report lists the production model trained on it.
    gone = sorted(r["content_sha256"] for r in curated if hashed.get(r["subject_sha256"]) == "patient-1")
    result = purge_record(config=config, store=store, domain=DOMAIN, subject_id="patient-1", who="dpo", why="erasure 7")
    assert [(a["artifact_id"], a["in_production"]) for a in result.trained_on_subject] == [(first.artifact_id, True)]
    assert [a["artifact_id"] for a in result.trained_on_records] == [first.artifact_id]
    assert not {r["content_sha256"] for r in rows(config, store, WEEKS[0])} & set(gone)

    # The next weekly model excludes the erased records and says so: they are gone from its data, but the
    # production model it is fine-tuned from read one of them.
    land(store, WEEKS[1], subjects=False)
    assert process_partition(config=config, store=store, part=PartitionRef(domain=DOMAIN, interval=WEEKS[1]))
    second = weekly(config, store, 2)
    assert not set(planned_records(config=privacy, store=store, domain=DOMAIN,
                                   run_id=f"weekly-{DOMAIN}-2").hexes()) & set(gone)
    manifest = verify_artifact(store, load_ref(store, DOMAIN, second.artifact_id))
    assert manifest["parent"] == first.artifact_id
    assert (manifest["privacy"]["purged_since_parent"], manifest["privacy"]["purged_in_start_model"]) == (len(gone), 1)
    card = store.get(f"{load_ref(store, DOMAIN, second.artifact_id).root}/model_card.md").decode()
    assert f"{len(gone)} record(s) were erased (purged) since the previous model" in card
    assert "a monthly retrain from the base model removes them" in card
