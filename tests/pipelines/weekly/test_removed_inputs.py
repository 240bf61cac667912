"""A week whose inputs shrank: re-publication is refused until the removal is accepted; accepting it
re-decides the hashes the week no longer holds, and the end state is the in-order state of the new inputs."""

from __future__ import annotations

import json

import pytest

from pipelines.config import load_config
from pipelines.partition import Interval
from pipelines.publish import latest_commit
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import InputsRemoved, PartitionRef, process_partition, republish_displaced

W1, W2, W3 = (Interval.parse(n) for n in ("2026-10-04_2026-10-11", "2026-10-11_2026-10-18", "2026-10-18_2026-10-25"))
MOVED = [{"id": "m1", "text": "The lease ends in May."}, {"id": "m2", "text": "The employee was dismissed."}]
STAYS = [{"id": "s1", "text": "The contract was signed by both parties."}]
LATER = [{"id": "l1", "text": "The lease ends in May."}, {"id": "l2", "text": "Overtime pay was withheld."}]
LAST = [{"id": "z1", "text": "The employee was dismissed."}, {"id": "z2", "text": "The lease ends in May."}]


def _store(root, monkeypatch):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{root}")
    config = load_config()
    return config, LocalObjectStore(root / config.storage.bucket)


def _land(store, key, records):
    store.put(key, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())


def _run(config, store, interval, **kwargs):
    result = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=interval),
                               **kwargs)
    republish_displaced(config=config, store=store, targets=result.get("republish", []), run_key="manual")
    return result


def _state(store):
    """Per week: the newest version and its kept ids, and the duplicates with their first_seen day."""
    out = {}
    for week in (W1, W2, W3):
        commit = latest_commit(store, f"curated/legal/{week.name}")
        manifest = json.loads(store.get(commit.record["manifest"]))
        dups = [json.loads(line) for line in store.get(manifest["files"]["duplicates"]).splitlines()]
        out[week.name] = (commit.version, [r["id"] for r in read_parquet_rows(store.get(manifest["files"]["data"]))],
                          [(d["id"], d["reason"], d["first_seen"]) for d in dups])
    return out


def test_a_moved_file_is_refused_then_accepted_and_ends_as_the_in_order_run(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main as cli

    config, store = _store(tmp_path / "a", monkeypatch)
    _land(store, "landing/legal/2026-10-05/moved.jsonl", MOVED)  # landed in the wrong week
    _land(store, "landing/legal/2026-10-05/stays.jsonl", STAYS)
    _land(store, "landing/legal/2026-10-12/later.jsonl", LATER)
    _land(store, "landing/legal/2026-10-19/last.jsonl", LAST)
    for week in (W1, W2, W3):
        _run(config, store, week)
    assert _state(store)[W3.name][1] == []  # z1, z2 were duplicates of week 1

    # The file moves to its correct week (2026-10-13): week 1 no longer holds m1, m2.
    store.put("landing/legal/2026-10-13/moved.jsonl", store.get("landing/legal/2026-10-05/moved.jsonl"))
    store.delete("landing/legal/2026-10-05/moved.jsonl")
    before = latest_commit(store, f"curated/legal/{W1.name}")
    with pytest.raises(InputsRemoved) as refused:
        _run(config, store, W1)
    assert str(refused.value) == (
        f"legal {W1.name}: 1 input file(s) of the published version {before.version} are gone "
        "(landing/legal/2026-10-05/moved.jsonl); the dedup index still holds their records, so later weeks would "
        f"drop them as duplicates. Restore the files, or, if the removal is intended, run: python -m pipelines "
        f"ingest --interval {W1.name} --domain legal --accept-removed-inputs --who <you> "
        "(docs/RUNBOOK.md, 'Remove or move a landing file')")
    assert latest_commit(store, f"curated/legal/{W1.name}").n == before.n
    assert list(store.list("staging/")) == []

    # The runbook's command: refused without the flag (exit 1, the same message), accepted with it.
    assert cli(["ingest", "--interval", W1.name, "--domain", "legal"]) == 1
    assert capsys.readouterr().err.splitlines()[-1].endswith(str(refused.value))
    assert cli(["ingest", "--interval", W1.name, "--domain", "legal", "--accept-removed-inputs", "--who", "ann"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [(r["interval"], r["published"]) for r in output["republished"]] == [(W2.name, True), (W3.name, True)]
    commit = latest_commit(store, f"curated/legal/{W1.name}")
    assert (commit.record["changes"]["inputs_removed"], commit.record["changes"]["hashes_released"],
            commit.record["changes"]["accepted_by"]) == (["landing/legal/2026-10-05/moved.jsonl"], 2, "ann")
    shrunk = _state(store)

    # The same inputs run in order on a fresh store.
    config, fresh = _store(tmp_path / "b", monkeypatch)
    _land(fresh, "landing/legal/2026-10-05/stays.jsonl", STAYS)
    _land(fresh, "landing/legal/2026-10-12/later.jsonl", LATER)
    _land(fresh, "landing/legal/2026-10-13/moved.jsonl", MOVED)
    _land(fresh, "landing/legal/2026-10-19/last.jsonl", LAST)
    for week in (W1, W2, W3):
        _run(config, fresh, week)
    assert shrunk == _state(fresh)
    assert shrunk[W1.name][1] == ["s1"]
    assert shrunk[W2.name][1:] == (["l1", "l2", "m2"], [("m1", "duplicate_within_partition", "2026-10-12")])
    assert shrunk[W3.name][1:] == ([], [("z1", "duplicate_of_earlier_partition", "2026-10-13"),
                                        ("z2", "duplicate_of_earlier_partition", "2026-10-12")])
