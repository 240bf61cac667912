"""fetch_labeller: a crafted CURRENT.json (absolute names, "..", long names, duplicates, symlinks) writes nothing."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import pipelines.label
from pipelines.label.registry import PREFIX, fetch_labeller, publish_labeller
from pipelines.safepath import UnsafeName
from pipelines.storage import LocalObjectStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    # Loading is the labeller's own business (tests/pipelines/label/test_labeller.py): here the folder is returned.
    monkeypatch.setattr(pipelines.label, "load_labeller", lambda root: root)
    store = LocalObjectStore(tmp_path / "bucket")
    folder = tmp_path / "saved"
    (folder / "vocab").mkdir(parents=True)
    (folder / "labeller.json").write_text(json.dumps({"version": "v1", "labels": ["a", "b"]}))
    (folder / "vocab" / "words.txt").write_text("a\nb\n")
    publish_labeller(store, folder, name="screen")
    return store


def _pointer(store, **changes):
    pointer = json.loads(store.get(f"{PREFIX}/screen/CURRENT.json"))
    store.put(f"{PREFIX}/screen/CURRENT.json", json.dumps(dict(pointer, **changes)).encode())


def test_fetch_downloads_verifies_and_reuses(tmp_path, store):
    root, pointer = fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert root == tmp_path / "cache" / "screen" / "v1"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [".complete", "labeller.json", "vocab",
                                                                        "vocab/words.txt"]
    assert pointer["version"] == "v1"
    assert [p.name for p in (tmp_path / "cache" / "screen").iterdir()] == ["v1"]  # no temporary folder left


@pytest.mark.parametrize(("name", "why"), [
    ("ABSOLUTE", "absolute path"),
    ("../../escape.txt", "segment '..'"),
    ("vocab/../../../escape.txt", "segment '..'"),
    ("x" * 300, "a segment is longer than 255 bytes"),
    ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
    ("LABELLER.json", "duplicate of"),
    ("labeller.json/x", "lies inside 'labeller.json'"),
    (".complete", "the cache's own marker"),
])
def test_a_crafted_file_name_is_refused_before_any_write(tmp_path, store, name, why):
    target = tmp_path / "outside" / "escape.txt"
    name = str(target) if name == "ABSOLUTE" else name
    pointer = json.loads(store.get(f"{PREFIX}/screen/CURRENT.json"))
    _pointer(store, files=dict(pointer["files"], **{name: hashlib.sha256(b"x").hexdigest()}))
    with pytest.raises(UnsafeName, match=why):
        fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert not target.exists() and not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "cache" / "screen" / "v1").exists()
    assert list((tmp_path / "cache").rglob("*")) in ([], [tmp_path / "cache" / "screen"])


@pytest.mark.parametrize(("version", "why"), [("../../../outside", "segment '..'"), ("a/b", "a single name"),
                                              (3, "not a string"), ("", "empty")])
def test_a_crafted_version_is_refused(tmp_path, store, version, why):
    _pointer(store, version=version)
    with pytest.raises(UnsafeName, match=why):
        fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "outside").exists()


def test_a_symlink_planted_in_the_cache_is_refused_not_followed(tmp_path, store):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cache" / "screen").mkdir(parents=True)
    os.symlink(outside, tmp_path / "cache" / "screen" / "v1")
    with pytest.raises(UnsafeName, match="is a symbolic link"):
        fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert list(outside.iterdir()) == []


def test_a_half_written_cache_with_a_link_inside_is_replaced_not_written_through(tmp_path, store):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "labeller.json").write_text("precious")
    stale = tmp_path / "cache" / "screen" / "v1"
    stale.mkdir(parents=True)
    os.symlink(outside / "labeller.json", stale / "labeller.json")  # no .complete: an interrupted old fetch
    root, _ = fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert (outside / "labeller.json").read_text() == "precious"
    assert not (root / "labeller.json").is_symlink() and (root / ".complete").exists()


def test_a_digest_mismatch_leaves_no_cache(tmp_path, store):
    store.put(f"{PREFIX}/screen/v1/vocab/words.txt", b"tampered\n")
    with pytest.raises(RuntimeError, match="vocab/words.txt does not match its sha256"):
        fetch_labeller(store, "screen", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "screen").iterdir()) == []
