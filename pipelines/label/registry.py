"""Labeller artifacts in the object store, so every worker labels with the same model.

Layout::

    models/labellers/<name>/<version>/...        the files ``Labeller.save`` wrote
    models/labellers/<name>/CURRENT.json         {"version": ..., "files": {name: sha256}}, written last
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from pipelines.storage import NotFound, ObjectStore

PREFIX = "models/labellers"


def publish_labeller(store: ObjectStore, folder: str | Path, *, name: str) -> dict:
    """Upload a saved labeller and point ``CURRENT.json`` at it (files first, pointer last)."""
    folder = Path(folder)
    meta = json.loads((folder / "labeller.json").read_text(encoding="utf-8"))
    version = str(meta.get("version") or hashlib.sha256((folder / "labeller.json").read_bytes()).hexdigest()[:12])
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        files[rel] = hashlib.sha256(data).hexdigest()
        store.put(f"{PREFIX}/{name}/{version}/{rel}", data)
    pointer = {"name": name, "version": version, "files": files, "labels": meta.get("labels"),
               "metrics": meta.get("metrics")}
    store.put(f"{PREFIX}/{name}/CURRENT.json", json.dumps(pointer, indent=1, sort_keys=True).encode())
    return pointer


def current_labeller(store: ObjectStore, name: str) -> dict | None:
    try:
        return json.loads(store.get(f"{PREFIX}/{name}/CURRENT.json"))
    except NotFound:
        return None


def fetch_labeller(store: ObjectStore, name: str, *, cache_dir: str | Path | None = None):
    """Download (once per version, sha256-verified) and load the current labeller, or None if there is none."""
    from pipelines.label import load_labeller

    pointer = current_labeller(store, name)
    if pointer is None:
        return None, None
    root = Path(cache_dir or Path(tempfile.gettempdir()) / "mlops-labellers") / name / pointer["version"]
    if not (root / ".complete").exists():
        for rel, digest in pointer["files"].items():
            data = store.get(f"{PREFIX}/{name}/{pointer['version']}/{rel}")
            if hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError(f"labeller {name} {pointer['version']}: {rel} does not match its sha256; "
                                   "re-publish it")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        (root / ".complete").write_text("ok")
    return load_labeller(root), pointer
