"""A promoted artifact whose manifest names a file outside the cache: refused before any write, counted and
alerted as a refused artifact (not a store error), and the old model keeps serving."""

from __future__ import annotations

import hashlib
import json

import serving_helpers as h

from pipelines.artifacts import MANIFEST, artifact_id_of
from pipelines.publish import canonical_json
from pipelines.serving.auth import TokenSet
from pipelines.serving.config import ServingConfig
from pipelines.serving.service import ModelService
from pipelines.storage import LocalObjectStore


def test_unsafe_manifest_is_refused_counted_and_the_old_model_keeps_serving(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    v1 = h.push(store, domain="legal", folder=h.classifier_folder(tmp_path / "v1", seed=1), version="1.0",
                task="classification")
    assert h.promote(store, v1) == 1
    alerts: list[dict] = []
    service = ModelService(config=ServingConfig(cache_dir=str(tmp_path / "cache")), store=store,
                           domains={"legal": "classification"}, tokens=TokenSet({h.TOKEN: ("legal",)}),
                           alert=lambda _cfg, **kw: alerts.append(kw))
    assert service.refresh() == {"legal": "loaded"}

    # Someone who can write models/ plants a self-consistent artifact (its id is its files map's hash) whose
    # manifest names a file outside the cache, and a promotion record pointing at it.
    target = tmp_path / "outside" / "sitecustomize.py"
    manifest = json.loads(store.get(f"{v1.root}/{MANIFEST}"))
    payload = b"import os; os.system('echo owned')\n"
    files = dict(manifest["files"], **{str(target): {"sha256": hashlib.sha256(payload).hexdigest(),
                                                     "bytes": len(payload)}})
    evil = artifact_id_of(files)
    root = f"models/legal/artifacts/{evil}"
    for rel in manifest["files"]:
        store.put(f"{root}/{rel}", store.get(f"{v1.root}/{rel}"))
    store.put(f"{root}/{str(target).lstrip('/')}", payload)
    store.put(f"{root}/{MANIFEST}", canonical_json(dict(manifest, files=files, artifact_id=evil, version="6.6")))
    record = json.loads(store.get("models/legal/promotions/00000001.json"))
    store.put("models/legal/promotions/00000002.json",
              canonical_json(dict(record, number=2, artifact_id=evil, version="6.6")))

    assert service.refresh() == {"legal": "refused"}
    assert not target.exists() and not (tmp_path / "outside").exists()
    assert not (tmp_path / "cache" / "legal" / evil).exists()
    assert service.served["legal"].artifact_id == v1.artifact_id  # the old model keeps serving
    assert service.metrics.reloads.labels("legal", "refused")._value.get() == 1
    assert service.metrics.reloads.labels("legal", "error")._value.get() == 0
    assert [a["title"] for a in alerts] == ["serving: refused model for legal"]
    assert f"promotion 2 (artifact {evil}) was refused: unsafe manifest: " in alerts[0]["text"]
    assert f"unsafe file name {str(target)!r}" in alerts[0]["text"] and "absolute path" in alerts[0]["text"]
    assert f"1.0 (artifact {v1.artifact_id}) keeps serving" in alerts[0]["text"]
    assert service.refresh() == {"legal": "current"}  # refused once, not downloaded again every poll
