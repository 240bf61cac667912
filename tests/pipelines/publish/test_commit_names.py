"""A curated commit record's version is spliced into keys: a crafted one cannot reach another prefix."""

from __future__ import annotations

import json

import pytest

from pipelines.publish import latest_commit, read_committed_rows
from pipelines.safepath import UnsafeName
from pipelines.storage import LocalObjectStore


@pytest.mark.parametrize(("version", "why"), [("../../../models/legal/x", "segment '..'"), ("a/b", "a single name"),
                                              (None, "not a string"), ("/abs", "absolute path")])
def test_a_commit_naming_an_unsafe_version_is_refused(tmp_path, version, why):
    store = LocalObjectStore(tmp_path / "bucket")
    prefix = "curated/legal/2026-10-04_2026-10-11"
    store.put(f"{prefix}/_commits/00000001.json", json.dumps({"version": version, "n": 1}).encode())
    with pytest.raises(UnsafeName, match=why):
        latest_commit(store, prefix)
    with pytest.raises(UnsafeName, match=why):
        read_committed_rows(store, prefix)


def test_a_safe_version_reads_as_before(tmp_path):
    store = LocalObjectStore(tmp_path / "bucket")
    prefix = "curated/legal/2026-10-04_2026-10-11"
    store.put(f"{prefix}/_commits/00000001.json", json.dumps({"version": "0123456789abcdef", "n": 1}).encode())
    assert latest_commit(store, prefix).version == "0123456789abcdef"
