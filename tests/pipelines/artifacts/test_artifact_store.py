"""Upload (manifest last, create-only), store verification, atomic fetch and version claims on a local store."""

from __future__ import annotations

import json
import threading

import pytest

from _artifacts_helpers import flip_last_byte, make_folder
from pipelines.artifacts import (
    ArtifactCorrupt,
    ArtifactNotFound,
    claim_version,
    fetch_artifact,
    fetch_cached,
    list_artifacts,
    load_ref,
    push_artifact,
    verify_artifact,
    verify_folder,
)
from pipelines.storage import LocalObjectStore


class CountingStore(LocalObjectStore):
    """Records every put; optionally crashes on the manifest (a worker killed between files and manifest)."""

    def __init__(self, root, *, crash_on_manifest=False):
        super().__init__(root)
        self.puts: list[str] = []
        self.crash_on_manifest = crash_on_manifest

    def put(self, key, data, *, if_none_match=False):
        if self.crash_on_manifest and key.endswith("/manifest.json"):
            raise KeyboardInterrupt("worker killed")
        self.puts.append(key)
        return super().put(key, data, if_none_match=if_none_match)


def test_push_uploads_files_then_manifest_last_and_is_idempotent(tmp_path):
    store = CountingStore(tmp_path / "bucket")
    folder = make_folder(tmp_path, "m", seed="s1")
    ref = push_artifact(store, folder, domain="legal")
    root = f"models/legal/artifacts/{ref.artifact_id}"
    assert ref.root == root and (ref.domain, ref.version, ref.kind, ref.task) == ("legal", "1.0", "weekly",
                                                                                  "classification")
    assert store.puts == [f"{root}/config.json", f"{root}/model.safetensors", f"{root}/tokenizer/tokenizer.json",
                          f"{root}/manifest.json"]
    assert push_artifact(store, folder, domain="legal") == ref
    assert len(store.puts) == 4  # the second push wrote nothing
    assert verify_artifact(store, ref)["artifact_id"] == ref.artifact_id


def test_crash_before_manifest_leaves_an_invisible_artifact_that_a_retry_completes(tmp_path):
    folder = make_folder(tmp_path, "m", seed="s1")
    artifact_id = verify_folder(folder)["artifact_id"]
    crashing = CountingStore(tmp_path / "bucket", crash_on_manifest=True)
    with pytest.raises(KeyboardInterrupt):
        push_artifact(crashing, folder, domain="legal")
    assert len(crashing.puts) == 3  # every file landed ...
    store = CountingStore(tmp_path / "bucket")
    assert list_artifacts(store, "legal") == []  # ... but without its manifest the artifact does not exist
    with pytest.raises(ArtifactNotFound, match=artifact_id):
        load_ref(store, "legal", artifact_id)
    ref = push_artifact(store, folder, domain="legal")
    assert ref.artifact_id == artifact_id
    assert [r.artifact_id for r in list_artifacts(store, "legal")] == [artifact_id]
    assert load_ref(store, "legal", artifact_id) == ref


def test_push_refuses_a_folder_that_no_longer_matches_its_manifest(tmp_path, store):
    folder = make_folder(tmp_path, "m", seed="s1")
    (folder / "config.json").write_text('{"hidden_size": 9}\n')
    with pytest.raises(ArtifactCorrupt) as info:
        push_artifact(store, folder, domain="legal")
    assert info.value.file == "config.json"
    assert list(store.list("models/")) == []
    with pytest.raises(ValueError, match="for domain 'legal', not 'finance'"):
        push_artifact(store, make_folder(tmp_path, "n", seed="s2"), domain="finance")


@pytest.mark.parametrize("damage, file", [
    (lambda s, r: flip_last_byte(s, f"{r}/model.safetensors"), "model.safetensors"),
    (lambda s, r: s.delete(f"{r}/config.json"), "config.json"),
    (lambda s, r: s.put(f"{r}/tokenizer/vocab.txt", b"x"), "tokenizer/vocab.txt"),
])
def test_verify_artifact_in_store_names_the_bad_file(store, pushed, damage, file):
    ref = pushed("m")
    damage(store, ref.root)
    with pytest.raises(ArtifactCorrupt) as info:
        verify_artifact(store, ref)
    assert info.value.file == file


def test_fetch_is_verified_and_atomic(tmp_path, store, pushed):
    ref = pushed("m")
    dest = tmp_path / "cache" / "legal" / ref.artifact_id
    assert fetch_artifact(store, ref, dest) == dest
    assert verify_folder(dest)["artifact_id"] == ref.artifact_id
    assert sorted(p.name for p in dest.parent.iterdir()) == [ref.artifact_id]  # no temp folder left
    assert fetch_artifact(store, ref, dest) == dest  # a verified copy is reused
    assert fetch_cached(store, ref, cache_dir=tmp_path / "cache") == dest

    (dest / "config.json").write_text("{}")  # a damaged cache is replaced
    fetch_artifact(store, ref, dest)
    assert verify_folder(dest)["artifact_id"] == ref.artifact_id

    other = tmp_path / "cache" / "legal" / "other"
    flip_last_byte(store, f"{ref.root}/model.safetensors")
    with pytest.raises(ArtifactCorrupt) as info:
        fetch_artifact(store, ref, other)
    assert info.value.file == "model.safetensors"
    assert sorted(p.name for p in other.parent.iterdir()) == [ref.artifact_id]  # nothing half-written


def test_concurrent_fetches_end_with_one_verified_folder(tmp_path, store, pushed):
    ref = pushed("m")
    dest = tmp_path / "cache" / ref.artifact_id
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_artifact(store, ref, dest))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [dest] * 4
    assert verify_folder(dest)["artifact_id"] == ref.artifact_id
    assert [p.name for p in dest.parent.iterdir()] == [ref.artifact_id]


def test_version_claims(store):
    assert claim_version(store, "legal", kind="monthly", parent_version=None) == "1.0"
    assert claim_version(store, "legal", kind="weekly", parent_version="1.0") == "1.1"
    assert claim_version(store, "legal", kind="weekly", parent_version="1.1") == "1.2"
    # a second weekly from the same parent takes the next free minor of that major
    assert claim_version(store, "legal", kind="weekly", parent_version="1.1") == "1.3"
    assert claim_version(store, "legal", kind="monthly", parent_version="1.3") == "2.0"
    assert claim_version(store, "legal", kind="weekly", parent_version="2.0", run_id="run-7", who="dag") == "2.1"
    assert claim_version(store, "legal", kind="weekly", parent_version="2.0", run_id="run-7") == "2.1"  # re-run
    assert claim_version(store, "legal", kind="base", parent_version=None) == "3.0"
    assert claim_version(store, "finance", kind="weekly", parent_version=None) == "1.0"
    keys = [o.key.rsplit("/", 1)[-1] for o in store.list("models/legal/versions/")]
    assert keys == ["1.0.json", "1.1.json", "1.2.json", "1.3.json", "2.0.json", "2.1.json", "3.0.json"]
    body = json.loads(store.get("models/legal/versions/2.1.json"))
    assert {k: body[k] for k in ("version", "kind", "parent_version", "run_id", "claimed_by")} == \
        {"version": "2.1", "kind": "weekly", "parent_version": "2.0", "run_id": "run-7", "claimed_by": "dag"}
    with pytest.raises(ValueError, match="not <major>.<minor>"):
        claim_version(store, "legal", kind="weekly", parent_version="v2")


def test_concurrent_version_claims_get_distinct_numbers(store):
    got, barrier = [], threading.Barrier(4)

    def claim():
        barrier.wait()
        got.append(claim_version(store, "legal", kind="weekly", parent_version="1.0"))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["1.1", "1.2", "1.3", "1.4"]
