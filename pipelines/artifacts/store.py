"""Artifacts in the object store: upload (manifest last), verify, fetch atomically, claim versions.

Layout (``prefix`` is ``models`` by default)::

    <prefix>/<domain>/artifacts/<artifact_id>/...        one artifact; complete once manifest.json exists
    <prefix>/base/<name>/<artifact_id>/...               base models (kind "base"), same format
    <prefix>/<domain>/versions/<major>.<minor>.json      create-only claim of a version number
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.artifacts.manifest import (
    MANIFEST,
    ArtifactCorrupt,
    ArtifactNotFound,
    check_artifact_id,
    check_files,
    parse_version,
    verify_folder,
)
from pipelines.serialize import canonical_json, sha256_hex
from pipelines.safepath import UnsafeName, check_member_names, safe_member_path
from pipelines.storage import NotFound, ObjectStore

DEFAULT_PREFIX = "models"


@dataclass(frozen=True)
class ArtifactRef:
    """Where a complete artifact lives and what it is (read from its manifest)."""

    domain: str
    artifact_id: str
    version: str
    kind: str
    task: str
    root: str

    @property
    def manifest_key(self) -> str:
        return f"{self.root}/{MANIFEST}"


def artifact_root(prefix: str, domain: str, artifact_id: str, *, base: bool = False) -> str:
    """Key prefix of one artifact (``base=True``: a base model named ``domain``)."""
    check_artifact_id(artifact_id)
    return f"{prefix}/base/{domain}/{artifact_id}" if base else f"{prefix}/{domain}/artifacts/{artifact_id}"


def _ref(manifest: Mapping[str, Any], root: str) -> ArtifactRef:
    return ArtifactRef(domain=manifest["domain"], artifact_id=manifest["artifact_id"], version=manifest["version"],
                       kind=manifest["kind"], task=manifest["task"], root=root)


def push_artifact(store: ObjectStore, folder: str | Path, *, domain: str, prefix: str = DEFAULT_PREFIX) -> ArtifactRef:
    """Upload a model folder: every file first, ``manifest.json`` last and create-only.

    Until the manifest exists the artifact does not exist for any reader, so a crash mid-upload
    leaves nothing visible; pushing again completes it. Pushing the same content again is a no-op
    (same bytes, same id) and returns the existing ref.

    Args:
        store: the object store.
        folder: a folder with a ``manifest.json`` from ``build_manifest`` / ``write_model_card``.
        domain: the domain it belongs to (must match the manifest; the base model's name for kind "base").
        prefix: key prefix of model objects (``ArtifactsConfig.prefix``).

    Returns:
        The artifact's ref.

    Raises:
        ArtifactNotFound: the folder has no manifest.
        ArtifactCorrupt: the folder does not match its manifest (``exc.file`` names the file).
        ValueError: ``domain`` differs from the manifest's.
    """
    folder = Path(folder)
    manifest = verify_folder(folder)
    if manifest.get("domain") != domain:
        raise ValueError(f"{folder}/manifest.json is for domain {manifest.get('domain')!r}, not {domain!r}")
    root = artifact_root(prefix, domain, manifest["artifact_id"], base=manifest.get("kind") == "base")
    existing = _read_manifest(store, root)
    if existing is not None:
        return _ref(existing, root)
    for rel in sorted(manifest["files"]):
        # Plain put: the key names the content (id = hash of the files map), so a re-push after a crash
        # rewrites the same bytes, and a tampered object is repaired rather than trusted.
        store.put(f"{root}/{rel}", (folder / rel).read_bytes())
    if not store.put(f"{root}/{MANIFEST}", canonical_json(manifest), if_none_match=True):
        # A concurrent push of the same content finished first: its manifest stands.
        existing = _read_manifest(store, root)
        if existing is None:
            raise ArtifactNotFound(f"{store.uri(root)}/{MANIFEST} could not be written nor read; retry the push")
        return _ref(existing, root)
    return _ref(manifest, root)


def _read_manifest(store: ObjectStore, root: str) -> dict[str, Any] | None:
    try:
        data = store.get(f"{root}/{MANIFEST}")
    except NotFound:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ArtifactCorrupt(f"{store.uri(root)}/{MANIFEST} is not valid JSON ({exc})", file=MANIFEST) from None


def load_ref(store: ObjectStore, domain: str, artifact_id: str, *, prefix: str = DEFAULT_PREFIX,
             base: bool = False) -> ArtifactRef:
    """The ref of a complete artifact of ``domain`` (ArtifactNotFound if it has no manifest)."""
    root = artifact_root(prefix, domain, artifact_id, base=base)
    manifest = _read_manifest(store, root)
    if manifest is None:
        raise ArtifactNotFound(f"no artifact {artifact_id} for {domain} ({store.uri(root)}/{MANIFEST} does not "
                               f"exist); list them with `python -m pipelines model list --domain {domain}`")
    if manifest.get("artifact_id") != artifact_id or manifest.get("domain") != domain:
        raise ArtifactCorrupt(f"{store.uri(root)}/{MANIFEST} names artifact {manifest.get('artifact_id')} of "
                              f"{manifest.get('domain')}, not {artifact_id} of {domain}", file=MANIFEST)
    return _ref(manifest, root)


def read_artifact_manifest(store: ObjectStore, ref: ArtifactRef) -> dict[str, Any]:
    """The manifest of a stored artifact (not verified: use ``verify_artifact`` before trusting files)."""
    manifest = _read_manifest(store, ref.root)
    if manifest is None:
        raise ArtifactNotFound(f"{store.uri(ref.manifest_key)} does not exist")
    return manifest


def list_artifacts(store: ObjectStore, domain: str, *, prefix: str = DEFAULT_PREFIX) -> list[ArtifactRef]:
    """Complete artifacts of a domain (those with a manifest), oldest ``created_at`` first."""
    refs = []
    for folder in store.list_dirs(f"{prefix}/{domain}/artifacts/"):
        root = folder.rstrip("/")
        manifest = _read_manifest(store, root)
        if manifest is not None:
            refs.append((manifest.get("created_at", ""), _ref(manifest, root)))
    return [ref for _, ref in sorted(refs, key=lambda item: (item[0], item[1].artifact_id))]


def verify_artifact(store: ObjectStore, ref: ArtifactRef) -> dict[str, Any]:
    """Download every file of a stored artifact and check it against the manifest.

    Returns:
        The manifest.

    Raises:
        ArtifactNotFound: the artifact has no manifest.
        ArtifactCorrupt: a file is missing, extra or altered, or the manifest is not this artifact's.
    """
    manifest = read_artifact_manifest(store, ref)
    where = store.uri(ref.root)
    if manifest.get("artifact_id") != ref.artifact_id:
        raise ArtifactCorrupt(f"{where}: manifest names artifact {manifest.get('artifact_id')}", file=MANIFEST)
    head = f"{ref.root}/"
    listed = {o.key[len(head):]: o.size for o in store.list(head) if o.key[len(head):] != MANIFEST}
    # Names first (one LIST): a missing or extra file is reported without downloading anything. Listed sizes are
    # not compared: through client-side encryption they are the ciphertext's; the downloads below are checked.
    files = manifest.get("files") or {}
    _check_names(files, where)
    missing = sorted(set(files) - set(listed))
    extra = sorted(set(listed) - set(files))
    if missing:
        raise ArtifactCorrupt(f"{where}: {missing[0]} is listed in the manifest but missing", file=missing[0])
    if extra:
        raise ArtifactCorrupt(f"{where}: {extra[0]} is not listed in the manifest (unexpected extra file)",
                              file=extra[0])
    actual = {}
    for rel in sorted(listed):
        data = store.get(head + rel)
        actual[rel] = {"sha256": sha256_hex(data), "bytes": len(data)}
    check_files(manifest, actual, where=where)
    return manifest


def fetch_artifact(store: ObjectStore, ref: ArtifactRef, dest: str | Path) -> Path:
    """Download an artifact into ``dest`` atomically: readers see no folder or a complete, verified one.

    Files go to a temporary sibling folder, are verified against the manifest, and the folder is
    renamed into place. An existing ``dest`` that verifies as this artifact is reused (a cache hit);
    one that does not is replaced.

    Returns:
        ``dest``.

    Raises:
        ArtifactCorrupt: the stored artifact does not match its manifest (nothing is left at ``dest``).
        UnsafeName: the manifest names a file that is not a safe relative path (absolute, ``..``, a
            duplicate, too long, through a symlink...): refused before anything is written.
    """
    dest = Path(dest)
    if dest.is_dir() and _is_verified_copy(dest, ref):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = read_artifact_manifest(store, ref)
        if manifest.get("artifact_id") != ref.artifact_id:
            raise ArtifactCorrupt(f"{store.uri(ref.root)}: manifest names artifact {manifest.get('artifact_id')}",
                                  file=MANIFEST)
        # Every name is checked before the first byte is written: a manifest is only as trustworthy as
        # whoever could write models/, and a name like "/etc/x" or "../x" would otherwise land outside tmp.
        names = _check_names(manifest.get("files") or {}, store.uri(ref.root))
        for rel in names:
            path = safe_member_path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.write_bytes(store.get(f"{ref.root}/{rel}"))
            except NotFound:
                raise ArtifactCorrupt(f"{store.uri(ref.root)}: {rel} is listed in the manifest but missing",
                                      file=rel) from None
        (tmp / MANIFEST).write_bytes(canonical_json(manifest))
        verify_folder(tmp)
        if dest.exists():
            if _is_verified_copy(dest, ref):  # a concurrent fetch finished first
                return dest
            stale = dest.parent / f".stale-{dest.name}-{uuid.uuid4().hex[:8]}"
            os.rename(dest, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if _is_verified_copy(dest, ref):  # lost the rename race to an identical copy
                return dest
            raise
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_names(files: object, where: str) -> list[str]:
    if not isinstance(files, Mapping):
        raise UnsafeName(f"{where}/{MANIFEST}: 'files' is not a map of names", name=MANIFEST)
    if MANIFEST in files:
        raise UnsafeName(f"{where}/{MANIFEST}: 'files' lists {MANIFEST} itself", name=MANIFEST)
    try:
        return check_member_names(files)
    except UnsafeName as exc:
        raise UnsafeName(f"{where}: {exc}", name=exc.name) from None


def fetch_cached(store: ObjectStore, ref: ArtifactRef, *, cache_dir: str | Path) -> Path:
    """``fetch_artifact`` into ``<cache_dir>/<domain>/<artifact_id>`` (``ArtifactsConfig.cache_path``).

    Artifacts are immutable, so a verified copy in the cache is reused without downloading.

    Raises:
        UnsafeName: the domain or a file name of the manifest is not a safe relative path.
    """
    # The domain comes from a manifest too: it must name a folder inside the cache, like any file name.
    return fetch_artifact(store, ref, safe_member_path(cache_dir, f"{ref.domain}/{ref.artifact_id}"))


def _is_verified_copy(folder: Path, ref: ArtifactRef) -> bool:
    try:
        return verify_folder(folder).get("artifact_id") == ref.artifact_id
    except (ArtifactCorrupt, ArtifactNotFound, FileNotFoundError):
        return False


def _claimed_versions(store: ObjectStore, prefix: str, domain: str) -> dict[tuple[int, int], str]:
    out = {}
    for obj in store.list(f"{prefix}/{domain}/versions/"):
        name = obj.key.rsplit("/", 1)[-1]
        if name.endswith(".json"):
            try:
                out[parse_version(name[:-5])] = obj.key
            except ValueError:
                continue  # not a claim
    return out


def claim_version(
    store: ObjectStore,
    domain: str,
    *,
    kind: str,
    parent_version: str | None,
    prefix: str = DEFAULT_PREFIX,
    run_id: str | None = None,
    artifact_id: str | None = None,
    who: str = "",
    max_attempts: int = 100,
    now: dt.datetime | None = None,
) -> str:
    """Claim the next version number of a domain with a create-only ``versions/<v>.json``.

    A ``weekly`` fine-tune is ``<major of parent>.<minor + 1>`` (the next free minor of that major);
    a ``monthly`` full retrain, a ``base`` model, or a model without a parent is ``<highest major + 1>.0``.
    A lost race (the claim exists) takes the next number.

    Args:
        store: the object store.
        domain: the domain.
        kind: ``weekly``, ``monthly`` or ``base``.
        parent_version: the parent model's version, or None.
        prefix: key prefix of model objects.
        run_id: the training run; a re-run with the same ``run_id`` gets its earlier claim back.
        artifact_id: recorded in the claim when already known.
        who: recorded in the claim.
        max_attempts: claims to try before giving up.
        now: claim time (default: now, UTC).

    Returns:
        The claimed version, e.g. ``"2.4"``.

    Raises:
        ValueError: bad kind or version, or no free number after ``max_attempts`` claims.
    """
    if kind not in ("weekly", "monthly", "base"):
        raise ValueError(f"kind={kind!r}: use weekly, monthly or base")
    parent = parse_version(parent_version) if parent_version is not None else None
    claimed = _claimed_versions(store, prefix, domain)
    if run_id is not None:
        for number, key in sorted(claimed.items()):
            try:
                body = json.loads(store.get(key))
            except (NotFound, json.JSONDecodeError):
                continue
            if body.get("run_id") == run_id:
                return f"{number[0]}.{number[1]}"
    if kind == "weekly" and parent is not None:
        candidate = (parent[0], parent[1] + 1)
    else:
        candidate = (max([m for m, _ in claimed] + [parent[0] if parent else 0]) + 1, 0)
    when = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for _ in range(max_attempts):
        if candidate in claimed:
            candidate = (candidate[0], candidate[1] + 1) if kind == "weekly" and parent else (candidate[0] + 1, 0)
            continue
        version = f"{candidate[0]}.{candidate[1]}"
        body = {"version": version, "domain": domain, "kind": kind, "parent_version": parent_version,
                "artifact_id": artifact_id, "run_id": run_id, "claimed_by": who, "claimed_at": when}
        if store.put(f"{prefix}/{domain}/versions/{version}.json", canonical_json(body), if_none_match=True):
            return version
        claimed[candidate] = ""  # lost the race for this number: take the next
    raise ValueError(f"could not claim a version of {domain} after {max_attempts} attempts "
                     f"({store.uri(f'{prefix}/{domain}/versions/')}); is something claiming in a loop?")
