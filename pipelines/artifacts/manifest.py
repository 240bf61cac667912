"""The artifact manifest: what a model folder holds, where its data came from, and its content address.

``artifact_id`` is the first 16 hex chars of the sha256 of the canonical JSON of the ``files`` map
(``{relative_path: {"sha256", "bytes"}}``), so two folders with the same bytes have the same id and
``manifest.json`` itself (which holds timestamps) is not part of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.serialize import canonical_json

MANIFEST = "manifest.json"
FORMAT = 1
TASKS = ("classification", "causal_lm", "forecast")
KINDS = ("weekly", "monthly", "base")
DP_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant", "max_grad_norm", "ledger_key")
# Recorded when given: the ε the training engine's own accountant reported, the privacy unit, the clipping method,
# what training used from the one source of truth (``pipelines.privacy.dp_training_settings``), and the processes
# that trained the run (torchrun world size) and their throughput (examples per second, all ranks).
DP_OPTIONAL_KEYS = ("epsilon_training", "unit", "method", "secure_mode", "poisson_sampling", "world_size",
                    "samples_per_s")
# What a manifest publishes of each partition: the interval and the curated version, nothing that depends on the
# exact record set. A digest over the records' hashes and an exact row count would let anyone who can guess
# candidate records confirm membership; the exact lineage stays in the private store (``privacy/lineage/``).
PARTITION_KEYS = ("interval", "version")
_VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """Base class of the artifact stage's errors (the message says what to do)."""


class ArtifactNotFound(ArtifactError):
    """No complete artifact (one with a manifest) exists under that id."""


class ArtifactCorrupt(ArtifactError):
    """An artifact's files do not match its manifest; ``file`` names the first offending file."""

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


def parse_version(version: str) -> tuple[int, int]:
    """``"3.12"`` -> ``(3, 12)``; anything else raises ValueError."""
    match = _VERSION_RE.match(str(version))
    if not match:
        raise ValueError(f"version {version!r} is not <major>.<minor> (e.g. 2.3)")
    return int(match.group(1)), int(match.group(2))


def check_artifact_id(artifact_id: str) -> str:
    """Return ``artifact_id`` if it looks like one (16 lowercase hex chars), else raise ValueError."""
    if not isinstance(artifact_id, str) or not _ID_RE.match(artifact_id):
        raise ValueError(f"artifact id {artifact_id!r} is not 16 lowercase hex characters "
                         "(see `python -m pipelines model list --domain D`)")
    return artifact_id


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_map(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``{relative_path: {"sha256", "bytes"}}`` of every file under ``folder`` except the manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    files = {}
    for dirpath, dirnames, names in os.walk(folder):
        dirnames.sort()
        for name in sorted(names):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if rel == MANIFEST:
                continue
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def artifact_id_of(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The content address of a ``files`` map: sha256 of its canonical JSON, first 16 hex chars.

    Canonical JSON here is ``json.dumps(files, sort_keys=True, separators=(",", ":"))`` (ASCII-escaped),
    the form any stage can recompute with the standard library alone.
    """
    text = json.dumps({k: dict(v) for k, v in files.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def _utc(now: dt.datetime | None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalise_data(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    partitions = data.get("partitions", []) if isinstance(data, Mapping) else data
    out = []
    for i, part in enumerate(partitions):
        missing = [k for k in PARTITION_KEYS if k not in part]
        if missing:
            raise ValueError(f"data.partitions[{i}] lacks {missing}: each partition needs {list(PARTITION_KEYS)} "
                             "(interval and curated version)")
        out.append({k: part[k] for k in PARTITION_KEYS})
    return {"partitions": out}


def _normalise_dp(dp: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if dp is None:
        return None
    unknown = set(dp) - set(DP_KEYS) - set(DP_OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"dp has unknown key(s) {sorted(unknown)}; known: {list(DP_KEYS + DP_OPTIONAL_KEYS)}")
    for key in ("epsilon", "delta"):
        if not isinstance(dp.get(key), (int, float)) or isinstance(dp.get(key), bool) or dp[key] < 0:
            raise ValueError(f"dp.{key}={dp.get(key)!r}: a DP run must record a non-negative {key} "
                             "(pass dp=None for a model trained without differential privacy)")
    return {**{k: dp.get(k) for k in DP_KEYS}, **{k: dp[k] for k in DP_OPTIONAL_KEYS if k in dp}}


def build_manifest(
    folder: str | Path,
    *,
    domain: str,
    task: str,
    kind: str,
    version: str,
    parent: str | None,
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    code_version: str,
    dp: Mapping[str, Any] | None,
    metrics: Mapping[str, Any],
    created_by: str,
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Hash every file of a model folder and write its ``manifest.json``.

    Call it again (or let ``write_model_card`` do it) after adding files: the manifest must list
    exactly what the folder holds, or ``verify_folder`` and ``push_artifact`` refuse it.

    Args:
        folder: the model folder (``save_pretrained`` output plus tokenizer, card, plots, metrics).
        domain: the domain (or the base model's name for ``kind="base"``).
        task: ``classification``, ``causal_lm`` or ``forecast``.
        kind: ``weekly`` (fine-tune), ``monthly`` (full retrain) or ``base``.
        version: ``<major>.<minor>`` from ``claim_version``.
        parent: artifact id this one was trained from, or None.
        data: ``{"partitions": [{"interval", "version", ...}]}`` (or the list alone); only ``PARTITION_KEYS`` are
            published (a digest or row count given is dropped: exact lineage belongs in the private store).
        code_version: git revision or package digest of the training code.
        dp: DP parameters (keys of ``DP_KEYS``), or None when trained without DP.
        metrics: held-out metrics, e.g. ``{"accuracy": 0.91, "split": "<digest>"}``.
        created_by: who or what produced it (user, DAG run id).
        created_at: creation time (default: now, UTC).

    Returns:
        The manifest, as written to ``folder/manifest.json``.

    Raises:
        ValueError: a field is invalid (the message names it).
        FileNotFoundError: ``folder`` does not exist.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r}: use one of {list(TASKS)}")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {list(KINDS)}")
    parse_version(version)
    if parent is not None:
        check_artifact_id(parent)
    if not domain or "/" in domain:
        raise ValueError(f"domain={domain!r} must be a non-empty name without '/'")
    files = file_map(folder)
    if not files:
        raise ValueError(f"model folder {folder} holds no files: save the model into it first")
    manifest = {
        "format": FORMAT,
        "artifact_id": artifact_id_of(files),
        "domain": domain,
        "task": task,
        "version": version,
        "kind": kind,
        "parent": parent,
        "files": files,
        "data": _normalise_data(data),
        "code_version": str(code_version),
        "dp": _normalise_dp(dp),
        "metrics": json.loads(json.dumps(dict(metrics))),
        "created_at": _utc(created_at),
        "created_by": str(created_by),
    }
    (Path(folder) / MANIFEST).write_bytes(canonical_json(manifest))
    return manifest


def reseal_manifest(folder: str | Path, manifest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Re-hash the folder into its manifest (after files were added or rewritten) and write it.

    Args:
        folder: the artifact folder.
        manifest: the manifest to re-seal (default: the folder's ``manifest.json``).
    """
    folder = Path(folder)
    manifest = dict(manifest) if manifest is not None else read_manifest(folder)
    files = file_map(folder)
    manifest = dict(manifest, files=files, artifact_id=artifact_id_of(files))
    (folder / MANIFEST).write_bytes(canonical_json(manifest))
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a local artifact folder (ArtifactNotFound if it has none)."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactNotFound(f"{path} does not exist: build it with build_manifest(folder, ...)") from None
    except json.JSONDecodeError as exc:
        raise ArtifactCorrupt(f"{path} is not valid JSON ({exc})", file=MANIFEST) from None


def check_files(manifest: Mapping[str, Any], actual: Mapping[str, Mapping[str, Any]], *, where: str) -> None:
    """Compare a manifest's files with what is there; raise ArtifactCorrupt naming the first difference.

    Args:
        manifest: the manifest.
        actual: ``{relative_path: {"sha256", "bytes"}}`` found (sha256 may be omitted for a size-only pass).
        where: the folder or store prefix, for the message.
    """
    files = manifest.get("files")
    if not isinstance(files, Mapping) or not files:
        raise ArtifactCorrupt(f"{where}: manifest lists no files", file=MANIFEST)
    if artifact_id_of(files) != manifest.get("artifact_id"):
        raise ArtifactCorrupt(f"{where}: manifest's artifact_id {manifest.get('artifact_id')} does not match its "
                              f"files map ({artifact_id_of(files)}): the manifest was edited; rebuild the artifact",
                              file=MANIFEST)
    for rel in sorted(files):
        if rel not in actual:
            raise ArtifactCorrupt(f"{where}: {rel} is listed in the manifest but missing", file=rel)
    for rel in sorted(actual):
        if rel not in files:
            raise ArtifactCorrupt(f"{where}: {rel} is not listed in the manifest (unexpected extra file)", file=rel)
    for rel in sorted(files):
        want, got = files[rel], actual[rel]
        if got.get("bytes") != want.get("bytes"):
            raise ArtifactCorrupt(f"{where}: {rel} has {got.get('bytes')} bytes, manifest says {want.get('bytes')}",
                                  file=rel)
        if "sha256" in got and got["sha256"] != want.get("sha256"):
            raise ArtifactCorrupt(f"{where}: {rel} does not match its sha256 in the manifest (altered)", file=rel)


def verify_folder(folder: str | Path) -> dict[str, Any]:
    """Recompute every file's sha256 in a local artifact folder and compare with its manifest.

    Returns:
        The manifest.

    Raises:
        ArtifactNotFound: the folder has no manifest.
        ArtifactCorrupt: a file is missing, extra or altered (``exc.file`` names it).
    """
    manifest = read_manifest(folder)
    check_files(manifest, file_map(folder), where=str(folder))
    return manifest
