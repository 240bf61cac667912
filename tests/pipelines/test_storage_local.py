"""LocalObjectStore: the folder-backed store that tests and local runs use."""

from __future__ import annotations

import pytest

from pipelines.storage import LocalObjectStore, NotFound


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "bucket")


def test_put_get_overwrite(store):
    assert store.put("a/b/c.txt", b"one") is True
    assert store.get("a/b/c.txt") == b"one"
    assert store.put("a/b/c.txt", b"two") is True
    assert store.get("a/b/c.txt") == b"two"
    assert store.exists("a/b/c.txt")
    assert not store.exists("a/b/missing.txt")


def test_create_only_put_keeps_the_first_bytes(store):
    assert store.put("_commits/00000001.json", b"first", if_none_match=True) is True
    assert store.put("_commits/00000001.json", b"second", if_none_match=True) is False
    assert store.get("_commits/00000001.json") == b"first"
    assert [o.key for o in store.list("")] == ["_commits/00000001.json"]  # no temp file left behind


def test_list_with_prefix_and_start_after_is_sorted(store):
    for key in ["p/b", "p/a", "p/c/d", "q/a", "pa"]:
        store.put(key, key.encode())
    assert [o.key for o in store.list("p/")] == ["p/a", "p/b", "p/c/d"]
    assert [o.key for o in store.list("p")] == ["p/a", "p/b", "p/c/d", "pa"]
    assert [o.key for o in store.list("p/", start_after="p/a")] == ["p/b", "p/c/d"]
    assert [o.key for o in store.list("", start_after="p/c/d")] == ["pa", "q/a"]
    assert [o.key for o in store.list("zzz/")] == []
    assert [(o.key, o.size) for o in store.list("q/")] == [("q/a", 3)]


def test_list_dirs(store):
    for key in ["c/d2/x", "c/d1/y", "c/d1/z/w", "c/file", "e/f"]:
        store.put(key, b"")
    assert store.list_dirs("c/") == ["c/d1/", "c/d2/"]
    assert store.list_dirs("") == ["c/", "e/"]
    assert store.list_dirs("missing/") == []


def test_delete_is_idempotent(store):
    store.put("k", b"v")
    store.delete("k")
    store.delete("k")
    assert not store.exists("k")
    assert list(store.list("")) == []


def test_get_missing_raises_not_found(store):
    with pytest.raises(NotFound):
        store.get("missing")
    store.put("dir/file", b"")
    with pytest.raises(NotFound):
        store.get("dir")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", ""])
def test_bad_keys_are_rejected(store, key):
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        store.get(key)


def test_uri(store, tmp_path):
    assert store.uri("a/b") == (tmp_path / "bucket" / "a" / "b").as_uri()
