"""The one place the service touches artifacts and models: ``pipelines.artifacts`` and ``pipelines.modeling``.

- :func:`production`: the domain's production pointer (``pipelines.artifacts.current_production``).
- :func:`fetch_artifact`: the artifact that pointer names, downloaded into the local cache and verified
  (``load_ref`` + ``fetch_cached``: every file's sha256 against the manifest), and refused unless the id
  recomputed from the manifest's ``files`` map (``artifact_id_of``) is the id the pointer names.
- :func:`load_servable`: ``pipelines.modeling.load_model`` (the same loader training uses, so the
  tokenizer, the jieba segmentation and the prompt format match what the model was trained on),
  optionally with INT8 dynamic quantization of the Linear layers for CPU inference.

Every failure that means "this artifact cannot be served" becomes :class:`ArtifactRefused`; store
errors (worth retrying) pass through as ``pipelines.storage.StorageError``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactCorrupt,
    ArtifactNotFound,
    PromotionRecord,
    artifact_id_of,
    current_production,
    fetch_cached,
    load_ref,
    read_manifest,
)
from pipelines.artifacts.manifest import check_artifact_id
from pipelines.safepath import UnsafeName
from pipelines.storage import ObjectStore

log = logging.getLogger("pipelines.serving")

MODELS_PREFIX = "models"
SERVED_TASKS = ("classification", "causal_lm")

__all__ = ["MODELS_PREFIX", "SERVED_TASKS", "ArtifactRefused", "PromotionRecord", "ServableModel", "fetch_artifact",
           "load_servable", "model_bytes", "production"]


class ArtifactRefused(RuntimeError):
    """An artifact cannot be served: no manifest, a file missing or altered, a wrong id, or it does not load."""


@dataclass(frozen=True)
class ServableModel:
    """A loaded model plus what serving needs to know about it.

    Attributes:
        loaded: the ``pipelines.modeling.LoadedModel`` (its ``model`` is the INT8 one when quantized).
        manifest: the artifact's verified manifest.
        quantized: whether Linear layers run as INT8.
        bytes: size of the weights as loaded (INT8 packed weights included).
    """

    loaded: Any
    manifest: dict
    quantized: bool = False
    bytes: int = 0

    @property
    def task(self) -> str:
        return self.loaded.task

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def labels(self) -> tuple[str, ...]:
        return self.loaded.labels

    @property
    def max_length(self) -> int:
        """Longest sequence the model accepts (its position embeddings)."""
        return int(self.loaded.config.get("max_length") or 128)


def production(store: ObjectStore, domain: str, *, prefix: str = MODELS_PREFIX) -> PromotionRecord | None:
    """The newest promotion/rollback record of ``domain`` (production), or None before the first promotion.

    Raises:
        ArtifactRefused: the newest record is unreadable or names no valid artifact id.
        pipelines.storage.StorageError: the store could not be read.
    """
    try:
        record = current_production(store, domain, prefix=prefix)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactRefused(f"the newest promotion record of {domain} is unreadable: {exc}") from None
    if record is None:
        return None
    try:
        check_artifact_id(record.artifact_id)
    except ValueError as exc:
        raise ArtifactRefused(f"promotion {record.number} of {domain}: {exc}") from None
    return record


def fetch_artifact(store: ObjectStore, *, domain: str, artifact_id: str, cache_dir: str | Path,
                   prefix: str = MODELS_PREFIX) -> Path:
    """Download (or reuse from the cache) and verify one artifact: ``<cache_dir>/<domain>/<artifact_id>/``.

    A cached copy is reused only if it still verifies; otherwise it is downloaded again. The download
    goes to a temporary folder that is verified and then renamed, so a refused artifact leaves nothing.

    Returns:
        The folder, holding ``manifest.json`` and every listed file.

    Raises:
        ArtifactRefused: no manifest (half-written or deleted), a file missing, extra or altered, a file
            name that is not a safe relative path (nothing is written then), or the id recomputed from the
            manifest's files map differs from ``artifact_id``.
        pipelines.storage.StorageError: the store could not be read (worth retrying).
    """
    try:
        ref = load_ref(store, domain, artifact_id, prefix=prefix)
        folder = fetch_cached(store, ref, cache_dir=cache_dir)
        manifest = read_manifest(folder)
    except ArtifactNotFound as exc:
        raise ArtifactRefused(f"{exc} (half-written or deleted artifact)") from None
    except ArtifactCorrupt as exc:
        raise ArtifactRefused(f"{exc.file}: {exc}") from None
    except UnsafeName as exc:
        # A crafted manifest (absolute name, "..", a symlink on the way, duplicates): refused before any
        # byte was written, and counted as a refused artifact, never as a store error to retry.
        raise ArtifactRefused(f"unsafe manifest: {exc}") from None
    except ValueError as exc:  # an id that is not 16 hex characters
        raise ArtifactRefused(str(exc)) from None
    # The pointer names content: the id must be the hash of the files map actually verified, whatever
    # the manifest claims about itself.
    recomputed = artifact_id_of(manifest.get("files") or {})
    if recomputed != artifact_id:
        raise ArtifactRefused(f"artifact {artifact_id}: its files map hashes to {recomputed}; the manifest does "
                              "not describe the artifact the pointer names")
    if manifest.get("domain") != domain:
        raise ArtifactRefused(f"artifact {artifact_id} is for domain {manifest.get('domain')!r}, not {domain!r}")
    return folder


def _quantize(model: Any) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch.ao's eager dynamic quantization is deprecated in favour of torchao, which is not installed here.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def model_bytes(model: Any) -> int:
    """Bytes of a model's weights as loaded (INT8 packed weights included)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def load_servable(folder: str | Path, *, quantize_int8: bool = False) -> ServableModel:
    """Load a verified artifact folder for inference with ``pipelines.modeling.load_model``.

    Args:
        folder: a folder returned by :func:`fetch_artifact`.
        quantize_int8: run the Linear layers as INT8 (dynamic quantization, CPU).

    Raises:
        ArtifactRefused: the task is not served over HTTP, the manifest and the model disagree on the
            task, or the files do not load.
    """
    from pipelines.modeling import ModelFolderError, load_model, pad_token_id

    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except (ArtifactNotFound, ArtifactCorrupt) as exc:
        raise ArtifactRefused(str(exc)) from None
    task = manifest.get("task")
    if task not in SERVED_TASKS:
        raise ArtifactRefused(f"task {task!r} is not served over HTTP (only {', '.join(SERVED_TASKS)})")
    try:
        loaded = load_model(folder)
    except (ModelFolderError, OSError, ValueError, KeyError) as exc:
        raise ArtifactRefused(f"{folder.name}: does not load as a {task} model: {exc}") from None
    if loaded.task != task:
        raise ArtifactRefused(f"manifest says task {task!r} but the model folder holds a {loaded.task!r} model")
    if task == "causal_lm":
        if loaded.tokenizer.pad_token is None:  # e.g. an imported Llama 3 tokenizer: pad with an id the model knows
            loaded.tokenizer.pad_token = loaded.tokenizer.convert_ids_to_tokens(pad_token_id(loaded.model,
                                                                                             loaded.tokenizer))
        loaded.tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if quantize_int8:
        loaded = replace(loaded, model=_quantize(loaded.model))
    return ServableModel(loaded=loaded, manifest=manifest, quantized=quantize_int8, bytes=model_bytes(loaded.model))
