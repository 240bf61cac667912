"""Curated partition files and numbered commit records on a local store."""

from __future__ import annotations

import json

from pipelines.publish import commit_version, latest_commit, list_partitions, read_committed_rows
from pipelines.serialize import parquet_bytes
from pipelines.storage import LocalObjectStore

from _curated_rows import ROWS

PREFIX = "curated/legal/2024-06-03_2024-06-10"


def test_commit_numbering_and_latest(tmp_path):
    store = LocalObjectStore(tmp_path)
    assert latest_commit(store, PREFIX) is None
    commits = [commit_version(store, PREFIX, {"version": v}) for v in ("v1", "v2", "v3")]
    assert [c.n for c in commits] == [1, 2, 3]
    assert [c.key for c in commits] == [f"{PREFIX}/_commits/0000000{n}.json" for n in (1, 2, 3)]
    latest = latest_commit(store, PREFIX)
    assert (latest.n, latest.key, latest.version) == (3, f"{PREFIX}/_commits/00000003.json", "v3")
    assert latest.record == {"version": "v3", "n": 3}
    assert json.loads(store.get(f"{PREFIX}/_commits/00000001.json")) == {"version": "v1", "n": 1}


class CommitsFirst:
    """A store where another committer slips in its commit just before our first create-only commit put."""

    def __init__(self, inner: LocalObjectStore) -> None:
        self.inner = inner
        self.raced = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        if "/_commits/" in key and not self.raced:
            self.raced = True
            commit_version(self.inner, PREFIX, {"version": "theirs"})
        return self.inner.put(key, data, if_none_match=if_none_match)


def test_interleaved_commits_never_reuse_a_number(tmp_path):
    inner = LocalObjectStore(tmp_path)
    commit_version(inner, PREFIX, {"version": "v1"})
    mine = commit_version(CommitsFirst(inner), PREFIX, {"version": "mine"})
    assert mine.n == 3
    assert [o.key.rsplit("/", 1)[-1] for o in inner.list(f"{PREFIX}/_commits/")] == [
        "00000001.json", "00000002.json", "00000003.json"]
    assert json.loads(inner.get(f"{PREFIX}/_commits/00000002.json"))["version"] == "theirs"
    assert json.loads(inner.get(f"{PREFIX}/_commits/00000003.json"))["version"] == "mine"
    assert latest_commit(inner, PREFIX).version == "mine"


def test_read_committed_rows_and_list_partitions(tmp_path):
    store = LocalObjectStore(tmp_path)
    assert read_committed_rows(store, PREFIX) is None
    store.put(f"{PREFIX}/v-abc/data.parquet", parquet_bytes(ROWS))
    store.put("curated/legal/2024-06-10_2024-06-17/v-def/data.parquet", parquet_bytes(ROWS[:1]))  # never committed
    commit_version(store, PREFIX, {"version": "abc"})
    commit, rows = read_committed_rows(store, PREFIX)
    assert (commit.n, commit.version) == (1, "abc")
    assert rows == ROWS
    assert list_partitions(store, "curated", "legal") == ["2024-06-03_2024-06-10"]
    assert list_partitions(store, "curated", "medical") == []
