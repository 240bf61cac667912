"""Manifest, content address and local verification."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipelines.artifacts import (
    ArtifactCorrupt,
    ArtifactNotFound,
    artifact_id_of,
    build_manifest,
    file_map,
    verify_folder,
)
from pipelines.serialize import canonical_json

from _artifacts_helpers import DP, PARTITIONS, WHEN, make_folder


def test_manifest_lists_every_file_and_id_is_the_hash_of_the_files_map(tmp_path):
    folder = make_folder(tmp_path, "m", seed="s1")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert manifest["files"]["config.json"]["bytes"] == len('{"hidden_size": 8, "seed": "s1"}\n')
    assert manifest["artifact_id"] == artifact_id_of(manifest["files"])
    compact = json.dumps(manifest["files"], sort_keys=True, separators=(",", ":")).encode()
    assert manifest["artifact_id"] == hashlib.sha256(compact).hexdigest()[:16]
    assert len(manifest["artifact_id"]) == 16
    assert (manifest["format"], manifest["domain"], manifest["task"], manifest["kind"], manifest["version"]) == \
        (1, "legal", "classification", "weekly", "1.0")
    # Only the interval and curated version are published: a digest over the record set and an exact row count
    # would confirm a guessed record's membership.
    assert manifest["data"] == {"partitions": [{"interval": "2026-10-04_2026-10-11", "version": "abc123"}]}
    assert manifest["dp"] == DP
    assert manifest["created_at"] == "2026-10-11T03:00:00Z"
    assert (folder / "manifest.json").read_bytes() == canonical_json(manifest)
    assert verify_folder(folder) == manifest


def test_same_bytes_same_id_different_bytes_different_id(tmp_path):
    a = make_folder(tmp_path, "a", seed="same")
    b = make_folder(tmp_path, "b", seed="same")
    c = make_folder(tmp_path, "c", seed="other")
    ids = [json.loads((f / "manifest.json").read_text())["artifact_id"] for f in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert file_map(a) == file_map(b)


@pytest.mark.parametrize("damage, file, words", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00\x02" + (f / "model.safetensors").read_bytes()[2:]),
     "model.safetensors", "altered"),
    (lambda f: (f / "tokenizer" / "tokenizer.json").unlink(), "tokenizer/tokenizer.json", "missing"),
    (lambda f: (f / "extra.bin").write_bytes(b"x"), "extra.bin", "unexpected extra file"),
    (lambda f: (f / "config.json").write_text("{}"), "config.json", "bytes"),
])
def test_verify_folder_names_the_bad_file(tmp_path, damage, file, words):
    folder = make_folder(tmp_path, "m", seed="s1")
    damage(folder)
    with pytest.raises(ArtifactCorrupt, match=words) as info:
        verify_folder(folder)
    assert info.value.file == file
    assert file in str(info.value)


def test_edited_manifest_is_detected(tmp_path):
    folder = make_folder(tmp_path, "m", seed="s1")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["config.json"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_bytes(canonical_json(manifest))
    with pytest.raises(ArtifactCorrupt, match="artifact_id .* does not match its files map") as info:
        verify_folder(folder)
    assert info.value.file == "manifest.json"


def test_folder_without_manifest_is_not_an_artifact(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"w")
    with pytest.raises(ArtifactNotFound, match="build_manifest"):
        verify_folder(tmp_path / "m")


@pytest.mark.parametrize("field, value, message", [
    ("task", "regression", "task='regression'"),
    ("kind", "daily", "kind='daily'"),
    ("version", "1", "not <major>.<minor>"),
    ("parent", "not-an-id", "16 lowercase hex"),
    ("data", [{"interval": "x"}], r"data.partitions\[0\] lacks \['version'\]"),
    ("dp", {"epsilon": 1.0}, "dp.delta=None"),
    ("dp", {"epsilon": 1.0, "delta": 1e-5, "sigma": 1}, r"unknown key\(s\) \['sigma'\]"),
])
def test_build_manifest_rejects_bad_fields(tmp_path, field, value, message):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w")
    args = dict(domain="legal", task="classification", kind="weekly", version="1.0", parent=None, data=PARTITIONS,
                code_version="g", dp=DP, metrics={}, created_by="t", created_at=WHEN)
    args[field] = value
    with pytest.raises(ValueError, match=message):
        build_manifest(folder, **args)
    assert not (folder / "manifest.json").exists()


def test_model_without_dp_is_recorded_as_such(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w")
    manifest = build_manifest(folder, domain="legal", task="forecast", kind="monthly", version="2.0", parent=None,
                              data={"partitions": []}, code_version="g", dp=None, metrics={"mae": 1.5},
                              created_by="t", created_at=WHEN)
    assert manifest["dp"] is None and manifest["data"] == {"partitions": []}


def test_manifest_records_the_dp_settings_training_used(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w")
    manifest = build_manifest(folder, domain="legal", task="classification", kind="weekly", version="1.0",
                              parent=None, data=PARTITIONS, code_version="g",
                              dp={**DP, "secure_mode": True, "poisson_sampling": True}, metrics={}, created_by="t",
                              created_at=WHEN)
    assert (manifest["dp"]["secure_mode"], manifest["dp"]["poisson_sampling"]) == (True, True)
