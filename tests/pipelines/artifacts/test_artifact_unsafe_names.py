"""A crafted manifest (absolute names, "..", long names, duplicates, symlinks) is refused before any write."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pipelines.artifacts import MANIFEST, artifact_id_of, fetch_artifact, fetch_cached, load_ref, verify_artifact
from pipelines.artifacts.store import ArtifactRef
from pipelines.publish import canonical_json
from pipelines.safepath import UnsafeName


def forge(store, ref, extra: dict[str, bytes], *, base: bool = False, domain: str = "legal") -> ArtifactRef:
    """Copy ``ref`` under a new, self-consistent id whose manifest also lists ``extra`` (name -> bytes).

    Objects for the extra names are stored where the key is storable; the refusal must come first anyway.
    """
    manifest = json.loads(store.get(f"{ref.root}/{MANIFEST}"))
    files = dict(manifest["files"])
    for name, data in extra.items():
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    forged = artifact_id_of(files)
    root = f"models/base/{domain}/{forged}" if base else f"models/{domain}/artifacts/{forged}"
    for rel in manifest["files"]:
        store.put(f"{root}/{rel}", store.get(f"{ref.root}/{rel}"))
    for name, data in extra.items():
        try:
            store.put(f"{root}/{name}", data)
        except (ValueError, OSError):
            pass  # a local folder store refuses '..' keys and names its file system cannot hold
    store.put(f"{root}/{MANIFEST}", canonical_json(dict(manifest, files=files, artifact_id=forged, domain=domain,
                                                        kind="base" if base else manifest["kind"])))
    return load_ref(store, domain, forged, base=base)


@pytest.mark.parametrize(("name", "why"), [
    ("ABSOLUTE", "absolute path"),
    ("../../../escape.txt", "segment '..'"),
    ("tokenizer/../../escape.txt", "segment '..'"),
    ("x" * 300, "a segment is longer than 255 bytes"),
    ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
    ("MODEL.safetensors", "duplicate of"),
    ("config.json/inner", "lies inside 'config.json'"),
    ("a\\..\\escape.txt", "backslash"),
])
@pytest.mark.parametrize("base", [False, True], ids=["artifact", "base-model"])
def test_fetch_refuses_a_crafted_name_before_writing_anything(tmp_path, store, pushed, name, why, base):
    good = pushed("m1")
    target = tmp_path / "outside" / "escape.txt"
    name = str(target) if name == "ABSOLUTE" else name
    bad = forge(store, good, {name: b"#!/bin/sh\necho owned\n"}, base=base)
    dest = tmp_path / "cache" / "work" / "dest"
    with pytest.raises(UnsafeName, match=why):
        fetch_artifact(store, bad, dest)
    assert not target.exists() and not (tmp_path / "cache" / "escape.txt").exists()
    # Nothing at all was written: no folder, no temporary sibling left behind.
    assert list((tmp_path / "cache" / "work").iterdir()) == []
    with pytest.raises(UnsafeName, match=why):
        verify_artifact(store, bad)


def test_fetch_cached_refuses_a_domain_that_leaves_the_cache(tmp_path, store, pushed):
    good = pushed("m1")
    ref = ArtifactRef(domain="../../elsewhere", artifact_id=good.artifact_id, version=good.version, kind=good.kind,
                      task=good.task, root=good.root)
    with pytest.raises(UnsafeName, match="segment '..'"):
        fetch_cached(store, ref, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "elsewhere").exists()


def test_a_symlink_planted_in_the_cache_is_never_written_through(tmp_path, store, pushed):
    good = pushed("m1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("precious")
    dest = tmp_path / "cache" / "legal" / good.artifact_id
    dest.mkdir(parents=True)
    os.symlink(outside / "config.json", dest / "config.json")  # a stale/planted copy with a link in it
    os.symlink(outside, dest / "tokenizer")
    assert fetch_cached(store, good, cache_dir=tmp_path / "cache") == dest
    assert (outside / "config.json").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["config.json"]
    assert not (dest / "config.json").is_symlink() and not (dest / "tokenizer").is_symlink()
    # A link in place of the domain's cache folder is refused, not followed.
    os.symlink(outside, tmp_path / "cache" / "planted")
    ref = ArtifactRef(domain="planted", artifact_id=good.artifact_id, version=good.version, kind=good.kind,
                      task=good.task, root=good.root)
    with pytest.raises(UnsafeName, match="is a symbolic link"):
        fetch_cached(store, ref, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in outside.iterdir()) == ["config.json"]


def test_a_manifest_without_a_files_map_is_refused(tmp_path, store, pushed):
    good = pushed("m1")
    manifest = json.loads(store.get(f"{good.root}/{MANIFEST}"))
    store.put(f"{good.root}/{MANIFEST}", canonical_json(dict(manifest, files=["../x"])))
    with pytest.raises(UnsafeName, match="'files' is not a map of names"):
        fetch_artifact(store, good, tmp_path / "dest")
