"""Labeller artifacts in the object store, so every worker labels with the same model.

Layout::

    models/labellers/<name>/<version>/...        the files ``Labeller.save`` wrote
    models/labellers/<name>/CURRENT.json         {"version": ..., "files": {name: sha256}}, written last
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipelines.safepath import UnsafeName, check_member_names, check_segment, safe_member_path
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
    """Download (once per version, sha256-verified) and load the current labeller, or None if there is none.

    ``CURRENT.json`` is written by whoever can write ``models/``, so its version and every file name are
    checked (``pipelines.safepath``) before anything is written, and the files are downloaded and verified
    into a temporary folder that is renamed into place: a refused pointer leaves the cache as it was.

    Raises:
        pipelines.safepath.UnsafeName: the pointer names an unsafe version or file.
        RuntimeError: a file does not match its sha256.
    """
    from pipelines.label import load_labeller

    pointer = current_labeller(store, name)
    if pointer is None:
        return None, None
    version = pointer.get("version") if isinstance(pointer, dict) else None
    files = pointer.get("files") if isinstance(pointer, dict) else None
    if not isinstance(files, dict):
        raise UnsafeName(f"labeller {name}: CURRENT.json has no 'files' map; re-publish it", name="CURRENT.json")
    base = Path(cache_dir or Path(tempfile.gettempdir()) / "mlops-labellers")
    root = safe_member_path(base, f"{check_segment(name)}/{check_segment(version)}")
    names = check_member_names(files)
    if (root / ".complete").exists():
        return load_labeller(root), pointer
    if ".complete" in names:
        raise UnsafeName(f"labeller {name} {version}: lists '.complete' (the cache's own marker)", name=".complete")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{root.name}-", dir=root.parent))
    try:
        for rel in names:
            path = safe_member_path(tmp, rel)
            data = store.get(f"{PREFIX}/{name}/{version}/{rel}")
            if hashlib.sha256(data).hexdigest() != files[rel]:
                raise RuntimeError(f"labeller {name} {version}: {rel} does not match its sha256; re-publish it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (tmp / ".complete").write_text("ok")
        if root.exists() and not (root / ".complete").exists():
            _discard(root)  # a half-written copy (an older fetch wrote in place): replaced, never written into
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / ".complete").exists():  # not a concurrent fetch that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_labeller(root), pointer


def _discard(path: Path) -> None:
    if path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
