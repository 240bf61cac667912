"""A week larger than ``ingest.shard_records`` runs in shards and publishes the bytes of an unsharded run:
duplicates, repeated personal data and an id conflict across shards, a quarantined record and a review
queue chosen over the whole partition."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from pipelines.config import ConfigError, IngestConfig, SourceConfig, load_config
from pipelines.partition import Interval
from pipelines.publish import latest_commit, read_committed_rows
from pipelines.serialize import read_parquet_rows
from pipelines.storage import LocalObjectStore
from pipelines.weekly import PartitionRef, plan_shards, process_partition
from pipelines.weekly.shardplan import ShardFiles

WEEK = Interval.parse("2026-10-04_2026-10-11")
PREFIX = f"curated/legal/{WEEK.name}"
TOPICS = {
    "contract": ["The contract was signed by both parties.", "The supplier breached the sales contract.",
                 "The lease agreement terminates in May.", "Both parties amended the service agreement."],
    "employment": ["The employee was dismissed without notice.", "Overtime pay was withheld by the employer.",
                   "The worker filed a claim for unpaid wages.", "The employer ended the employment contract early."],
}


def _cuts(file_records: list[int], shard_records: int, tmp_path) -> list[tuple[int | None, list[bytes]]]:
    """The shards ShardFiles hands over for files of ``file_records`` records: (shard, its lines)."""
    handed = []
    folder = tmp_path / f"cuts-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()

    def done(k, path):
        assert path.exists()
        handed.append((k, path.read_bytes().splitlines()))
        path.unlink()  # as ingest_landing does, once uploaded

    n = 0
    with ShardFiles(folder, shard_records=shard_records, done=done) as out:
        for records in file_records:
            out.begin_file(records)
            for _ in range(records):
                out.write(b"%d\n" % n)
                n += 1
        assert out.close() == len(handed)
    assert b"".join(line for _, lines in handed for line in lines) == b"".join(b"%d" % i for i in range(n))
    return handed


def test_shard_files_pack_whole_files_then_cut_a_large_file_by_row_range(tmp_path):
    def ranges(file_records, shard_records):
        out, start = [], 0
        for k, lines in _cuts(file_records, shard_records, tmp_path):
            out.append((k, start, start + len(lines)))
            start += len(lines)
        return out

    assert ranges([3, 4], 0) == [(None, 0, 7)]  # 0: never shard
    assert ranges([3, 4], 7) == [(None, 0, 7)]  # a week that fits is one shard, the partition's own
    assert ranges([], 5) == [(None, 0, 0)]  # an empty week: one empty file
    assert ranges([3, 4, 2], 7) == [(0, 0, 7), (1, 7, 9)]
    assert ranges([3, 5, 2], 7) == [(0, 0, 3), (1, 3, 10)]  # the file that does not fit starts a shard
    assert ranges([2, 17, 0, 1], 5) == [(0, 0, 2), (1, 2, 7), (2, 7, 12), (3, 12, 17), (4, 17, 20)]


def test_landing_files_are_grouped_by_bytes_for_the_ingest_files_tasks(tmp_path):
    from pipelines.weekly.steps import group_files

    assert group_files([5, 5, 5], shard_bytes=0) == [[0, 1, 2]]  # 0: one task
    assert group_files([5, 5, 5], shard_bytes=10) == [[0, 1], [2]]
    assert group_files([3, 20, 3, 3], shard_bytes=10) == [[0], [1], [2, 3]]  # a larger file is a group of its own
    assert group_files([], shard_bytes=10) == [[]]

    # Three files, one group each: three tasks' shards, numbered in reading order, one ingest report.
    from pipelines.weekly import finish_ingest, ingest_files, plan_ingest

    config, store = _env(tmp_path, "groups", 0, shard_bytes=1)
    for key, rows in _week().items():
        store.put(key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    part = PartitionRef(domain="legal", interval=WEEK, run_key="g")
    plan = plan_ingest(config=config, store=store, part=part)
    assert plan["groups"] == [[0], [1], [2]]
    reports = [ingest_files(config=config, store=store, part=part, group=g) for g in (2, 0, 1)]  # any order
    assert [r["parsed"] for r in reports] == [14, 13, 3]
    result = finish_ingest(config=config, store=store, part=part)
    assert (result.records_in, result.parsed, len(result.shards)) == (30, 30, 3)
    assert [i["key"] for i in result.inputs] == sorted(_week())
    assert [t.label for t in plan_shards(config=config, store=store, part=part)] == ["legal 1/3", "legal 2/3",
                                                                                    "legal 3/3"]
    store.delete(result.shards[0].replace("raw-00000.jsonl", "ingest.json"))  # a group whose task failed
    with pytest.raises(RuntimeError, match=r"group\(s\) \[1\] of 3 were not ingested"):
        finish_ingest(config=config, store=store, part=part)


def test_shard_records_is_validated():
    source = SourceConfig(name="files", kind="files", prefix="{domain}")
    with pytest.raises(ConfigError, match="shard_records"):
        IngestConfig(sources=(source,), shard_records=-1)
    with pytest.raises(ConfigError, match="shard_bytes"):
        IngestConfig(sources=(source,), shard_bytes=-1)


def _env(tmp_path, name, shard_records, shard_bytes=0):
    root = tmp_path / name
    config = load_config(environ={"PIPELINE_S3_ENDPOINT_URL": f"file://{root}"})
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, shard_records=shard_records,
                                                                    shard_bytes=shard_bytes, batch_rows=4))
    return config, LocalObjectStore(root / config.storage.bucket)


def _week() -> dict[str, list[dict]]:
    """Three landing files; phones and e-mails recur across files, texts repeat across files."""
    unlabelled = ["The tenant signed a new lease contract.", "The company fired the engineer without cause.",
                  "A purchase agreement was drafted.", "Wages were paid late to the staff.",
                  "The vendor agreed to the contract terms.", "The manager cut the employee's hours.",
                  "The franchise agreement was renewed.", "The clerk was let go after the audit."]
    records = []
    for i in range(30):
        text = f"Case {i}: {unlabelled[i % len(unlabelled)]}"
        if i % 3 == 0:
            text += f" Call 1380013{i % 4:04d} today."  # 4 phones, first seen in different shards
        if i % 5 == 0:
            text += f" Write to clerk{i % 2}@court.example.org."
        record = {"id": f"r{i:02d}", "text": text}
        if i % 4 == 1:
            record["label"] = "contract"
        records.append(record)
    records[17]["text"] = records[2]["text"]  # duplicates of earlier shards' records
    records[26]["text"] = records[9]["text"]
    records[21]["id"] = "r04"  # an id already kept in an earlier shard, another text: id_conflict
    records[12] = {"id": "r12", "text": "test"}  # quarantined by the clean rules
    records[23] = {"id": "r23", "label": "contract"}  # no text: quarantined by standardize
    return {"landing/legal/2026-10-05/a.jsonl": records[:13], "landing/legal/2026-10-05/b.jsonl": records[13:16],
            "landing/legal/2026-10-08/c.jsonl": records[16:]}


def _objects(store) -> dict[str, bytes]:
    """Every object a published week leaves (curated, quarantine, index, review), the times of its commit
    record and review queue aside (wall-clock times of the run)."""
    out = {}
    for prefix in ("curated/", "quarantine/", "index/", "review/"):
        for obj in store.list(prefix):
            body = store.get(obj.key)
            if "/_commits/" in obj.key or obj.key.endswith(".meta.json"):
                record = json.loads(body)
                assert record.pop("committed_at", None) or record.pop("created_at", None)
                body = json.dumps(record, sort_keys=True).encode()
            out[obj.key] = body
    return out


def test_a_sharded_week_publishes_the_bytes_of_an_unsharded_run(tmp_path):
    from pipelines.label import LabellerConfig, train_labeller
    from pipelines.label.registry import publish_labeller

    labeller = train_labeller(texts=[t for ts in TOPICS.values() for t in ts],
                              labels=[label for label, ts in TOPICS.items() for _ in ts], language="en",
                              config=LabellerConfig(), seed=7)
    labeller.save(tmp_path / "labeller")
    runs = {}
    # "files": each landing file parsed by its own ingest_files task (ingest.shard_bytes 1), then cut by records.
    for name, shard_records, shard_bytes in (("whole", 0, 0), ("files", 0, 1), ("sharded", 5, 0)):
        config, store = _env(tmp_path, name, shard_records, shard_bytes)
        publish_labeller(store, tmp_path / "labeller", name="legal")
        if not runs:
            for key, rows in _week().items():
                store.put(key, "".join(json.dumps(r) + "\n" for r in rows).encode())
        else:  # the same files, modification times (the local store's etags, in the manifest) included
            shutil.copytree(runs["whole"][1].root / "landing", store.root / "landing")
        part = PartitionRef(domain="legal", interval=WEEK, run_key="run-1")
        result = process_partition(config=config, store=store, part=part)
        assert result["published"], result
        assert list(store.list("staging/")) == []
        runs[name] = (config, store, result)

    config, store, result = runs["sharded"]
    assert result["counts"]["records"] == {"in": 30, "kept": 25, "duplicate": 2, "quarantined": 3}
    whole, sharded = _objects(runs["whole"][1]), _objects(store)
    assert sorted(whole) == sorted(sharded)
    assert [k for k in whole if whole[k] != sharded[k]] == []
    assert _objects(runs["files"][1]) == whole
    manifest = json.loads(store.get(latest_commit(store, PREFIX).record["manifest"]))
    assert manifest["counts"]["quarantined_by_reason"] == {"clean.pattern.test_message": 1, "id_conflict": 1,
                                                          "schema.text.type": 1}
    assert manifest["steps"]["labelled"]["counts"]["queued"] >= 1
    assert any(k.startswith("review/legal/") for k in sharded)
    rows = {r["id"]: r for r in read_committed_rows(store, PREFIX)[1]}
    # Phones first seen in shards 0, 1, 2 and 3 of the week keep the numbers of their first appearance.
    assert [rows[f"r{i:02d}"]["text"].split("Call ")[1][:9] for i in (0, 3, 6, 9, 24)] == \
        ["[PHONE_1]", "[PHONE_2]", "[PHONE_3]", "[PHONE_4]", "[PHONE_1]"]

    # The week was really sharded (3 files, 28 parsed records, at most 5 a shard), and a re-run changes nothing.
    part = PartitionRef(domain="legal", interval=WEEK, run_key="run-2")
    from pipelines.weekly import ingest_landing

    ingest = ingest_landing(config=config, store=store, part=part)
    assert [t.label for t in plan_shards(config=config, store=store, part=part)] == \
        [f"legal {k}/{len(ingest.shards)}" for k in range(1, len(ingest.shards) + 1)]
    assert len(ingest.shards) == 7
    rerun = process_partition(config=config, store=store, part=part)
    assert (rerun["published"], rerun.get("reason")) == (False, "unchanged")
    assert _objects(store) == sharded
    assert list(store.list("staging/")) == []


def test_find_duplicates_takes_the_hashes_govern_shard_staged_and_rehashes_stale_ones(tmp_path, monkeypatch):
    from pipelines.serialize import ParquetParts
    from pipelines.standardize import CURATED_COLUMNS
    from pipelines.weekly import dedup_step
    from pipelines.weekly.dedup_step import HASHES_SUFFIX, hash_rows, stage_hashes, staged_hashes

    store = LocalObjectStore(tmp_path / "store")

    def staged(name, texts):
        rows = [{**dict.fromkeys(CURATED_COLUMNS), "id": f"{name}{i}", "domain": "legal", "text": t,
                 "arrival_date": f"2026-10-0{5 + i % 3}", "source_uri": f"s3://b/{name}#L{i}"} for i, t in enumerate(texts)]
        with ParquetParts(tmp_path / name, batch_rows=2) as out:
            out.write(rows)
            (path,) = out.close()
        store.put_file(f"staging/{name}.parquet", path)
        return f"staging/{name}.parquet", path

    key, path = staged("a", ["One text.", "Another  text.", "One text."])
    assert stage_hashes(store, key, path, batch_rows=2) == 3
    packed, days, ids = staged_hashes(store, key)
    expected = hash_rows(path, batch_rows=2)
    assert packed == expected[0] and list(days) == list(expected[1]) and len(packed) == 96
    assert ids == expected[2] == ["a0", "a1", "a2"]
    assert packed[:32] == packed[64:] and packed[:32] != packed[32:64]  # the same text, the same hash

    # The object changed after its hashes were staged (a task re-run): they are not used.
    _, other = staged("b", ["A different week.", "Of four.", "Texts.", "Here."])
    store.put_file(key, other)
    assert staged_hashes(store, key) is None
    assert store.exists(key + HASHES_SUFFIX)

    # A sharded run's find_duplicates reads every shard's staged hashes and hashes no text itself; govern_shard
    # hashes its rows as it writes them (no pass reading them back).
    from pipelines.weekly import shards

    calls, staged_by_govern = [], []
    original, original_put = dedup_step.hash_rows, shards.put_hashes

    def counted(path, **kwargs):
        calls.append(kwargs.get("progress") is not None)
        return original(path, **kwargs)

    def counted_put(store, key, packed, days, ids):
        staged_by_govern.append(len(ids))
        return original_put(store, key, packed, days, ids)

    config, store = _env(tmp_path, "sharded", 5)
    for key, rows in _week().items():
        store.put(key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    monkeypatch.setattr(dedup_step, "hash_rows", counted)
    monkeypatch.setattr(shards, "put_hashes", counted_put)
    result = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))
    assert result["published"] and result["counts"]["records"]["duplicate"] == 2
    assert calls == []  # no staged rows read back to hash them, by govern_shard or by find_duplicates
    # 30 records: 2 quarantined before dedup (no text, the clean rules) and 28 hashed, one shard at a time
    assert len(staged_by_govern) == 7 and sum(staged_by_govern) == 28


def test_steps_run_in_one_pass_stage_what_each_step_run_alone_stages(tmp_path):
    """``run_steps`` (how clean_shard and govern_shard run their steps) stages the rows, rejections and
    report counts that the same steps give run one after another, each writing and reading back its rows."""
    from pipelines.weekly import ingest_landing
    from pipelines.weekly import steps
    from pipelines.weekly.chain import run_steps

    config, store = _env(tmp_path, "onepass", 0)
    week = _week()
    week["landing/legal/2026-10-08/c.jsonl"] += [
        {"id": "h1", "text": "<p>Short</p>"}, {"id": "h2", "text": "  "},
        {"id": "p1", "text": "Mail clerk1@court.example.org or call 13800138000."}]
    for key, rows in week.items():
        store.put(key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    group = (steps.standardize_records, steps.clean_text, steps.mask_pii, steps.filter_sensitive)
    staged = {}
    for run in ("alone", "onepass"):
        part = PartitionRef(domain="legal", interval=WEEK, run_key=run)
        key = ingest_landing(config=config, store=store, part=part).key
        if run == "alone":
            for step in group:
                key = step(config=config, store=store, part=part, key=key).key
        else:
            seen = []
            key = run_steps(group, config=config, store=store, part=part, key=key, observe=seen.extend).key
            assert [r["id"] for r in seen] == [r["id"] for r in read_parquet_rows(store.get(key))]
        prefix = part.staging(config, "")
        staged[run] = {o.key[len(prefix):]: store.get(o.key) for o in store.list(prefix)}
    alone, onepass = staged["alone"], staged["onepass"]
    assert sorted(alone) == sorted(onepass)
    for name in sorted(alone):
        if name.endswith(".json"):  # reports: the same but for the time it took (and the run's name)
            a = json.loads(alone[name].replace(b"/alone", b"/run").replace(b'"alone"', b'"run"'))
            b = json.loads(onepass[name].replace(b"/onepass", b"/run").replace(b'"onepass"', b'"run"'))
            a.pop("seconds", None), b.pop("seconds", None)
            assert a == b, name
        else:
            assert alone[name] == onepass[name], name
    rejected = [json.loads(line)["reason"] for name in alone if name.startswith("rejected.")
                for line in alone[name].splitlines()]
    assert {"schema.text.pattern", "clean.pattern.test_message"} <= set(rejected) and len(rejected) >= 3
    masked = read_parquet_rows(onepass["filtered.parquet"])
    assert any("[PHONE_" in r["text"] for r in masked) and not any("13800138000" in r["text"] for r in masked)
