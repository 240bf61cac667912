"""Base models: the start of a slot's first weekly run and of every monthly retrain.

A base model is an artifact under ``<artifacts prefix>/base/<slot>/<artifact id>/``, made current by a numbered
create-only promotion record under ``<artifacts prefix>/base/<slot>/promotions/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactRef, build_manifest, current_production, force_gate, load_ref, promote, push_artifact,
    write_model_card,
)
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import RunRefused
from pipelines.finetune.inputs import code_version, slot_configs
from pipelines.forecast import base_series
from pipelines.label.data import SAMPLE_DIR, sample_records
from pipelines.safepath import check_member_names, safe_member_path
from pipelines.storage import ObjectStore, open_store
from pipelines.train.config import TrainingConfig
from pipelines.train.snapshot import SnapshotError, check_method, inspect_snapshot, licence_text, prepare_base_folder

BASE_PREFIX_PART = "base"  # base models: <artifacts prefix>/base/<slot>/<artifact_id>/


def base_ref(*, config: PipelineConfig, store: ObjectStore, domain: str) -> ArtifactRef | None:
    """The current base model of a slot (newest promotion under ``<prefix>/base``), or None."""
    prefix = config.artifacts.prefix
    record = current_production(store, domain, prefix=f"{prefix}/{BASE_PREFIX_PART}")
    return None if record is None else load_ref(store, domain, record.artifact_id, prefix=prefix, base=True)


def build_domain_base(*, config: PipelineConfig, store: ObjectStore, domain: str, who: str,
                      sample_dir: Path | None = None, size: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Build a slot's base model and publish it as a base artifact (promoted under ``<prefix>/base``).

    What the base starts from is ``training.base`` (:func:`build_base_folder`): ``public-pretrained`` (the
    encoder of :mod:`pipelines.pretrain.encoder`, built from public Chinese text), ``minilm`` (the English
    all-MiniLM-L6-v2 with a new head), or ``scratch``: a causal LM is then pretrained non-privately on public
    dialogues (:mod:`pipelines.pretrain.causal_lm`), a classifier is random-init with a tokenizer from the
    sample. Public pretraining never reads curated records, and drops any text equal to one of the domain's
    records in the bundled sample, so the base never saw a record it is tuned or evaluated on. The manifest's
    ``metrics.pretraining`` records what the base was trained on. The label set comes from the sample (labels
    are the domain's schema, not data). A forecaster slot (``finance_forecast``) has no vocabulary: its
    random-init DPLSTM records only the number of generated series (:func:`pipelines.forecast.base_series`).
    """
    slot, training, _privacy, artifacts, _max_drop = slot_configs(config=config, name=domain)
    if slot.is_forecast:
        texts: list[Any] = base_series(config=config, slot=slot, seed=seed)
        labels: list[str] = []
        source = {"series": len(texts), "series_source": f"generated (make_sample_series seed {seed})"}
    else:
        texts, labels = _base_texts(domain, slot.task, training, sample_dir)
        held_out = evaluation_texts(domain, sample_dir or SAMPLE_DIR)
        source = {"sample_texts": len(texts), "evaluation_texts_excluded": len(held_out),
                  "labels_source": "data/sample (public)"}
    with tempfile.TemporaryDirectory(prefix="base-") as tmp:
        folder = build_base_folder(task=slot.task, training=training,
                                   records=texts if slot.is_forecast else texts + held_out, labels=labels,
                                   out_dir=Path(tmp) / "model", size=size or training.size, seed=seed,
                                   forecast=slot.is_forecast)
        source = {**source, **pretraining_summary(folder)}
        ref = _publish_base(store, folder, domain=domain, task=slot.task, prefix=artifacts.prefix, metrics=source,
                            who=who, why="base model")
    return {"domain": domain, "artifact_id": ref.artifact_id, "root": ref.root, "task": slot.task, "labels": labels}


def _publish_base(store: ObjectStore, folder: Path, *, domain: str, task: str, prefix: str,
                  metrics: Mapping[str, Any], who: str, why: str, card: bool = False) -> ArtifactRef:
    """Seal ``folder`` as a base artifact (manifest, optionally the model card), push it and promote it under
    ``<prefix>/base`` (a base model has no gate: it is the start of training, not what is served)."""
    manifest = build_manifest(folder, domain=domain, task=task, kind="base", version="0.0", parent=None,
                              data=[], code_version=code_version(), dp=None, metrics=dict(metrics), created_by=who)
    if card:
        write_model_card(folder, manifest, [], intended_use=(
            "The start model of this domain's DP fine-tunes (imported pretrained weights); not served as is."))
    ref = push_artifact(store, folder, domain=domain, prefix=prefix)  # <prefix>/base/<slot>/<id>
    promote(store, domain, ref, gate=force_gate(reason=why), who=who, why=why, prefix=f"{prefix}/{BASE_PREFIX_PART}")
    return ref


def import_domain_base(*, config: PipelineConfig, store: ObjectStore, domain: str, source: str, who: str,
                       revision: str | None = None, licence: str | None = None, sample_dir: Path | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Import a user's pretrained transformers snapshot as a domain's base model (``model import-base``).

    The snapshot is checked (:func:`pipelines.train.snapshot.inspect_snapshot`: safetensors only, no custom code,
    an architecture transformers ships for the domain's task) and the domain's ``training.method`` against what the
    architecture can be trained with under DP, before anything is written to the store. The artifact records the
    source, revision, licence and the sha256 of every snapshot file in its manifest (``metrics.provenance``) and
    model card; it is promoted under ``<prefix>/base`` exactly as a built base model is.

    Args:
        config / store: the pipeline config and its object store.
        domain: a configured text domain (classification or causal_lm).
        source: a snapshot folder, or ``s3://bucket/prefix`` (downloaded through the project's store; every object
            name is checked before it becomes a local path).
        who: recorded as the creator and promoter.
        revision / licence: recorded as given (licence default: the first line of the snapshot's LICENSE file).
        sample_dir: the public sample the class labels come from (default: the bundled one).
        seed: seeds a classifier's new head.

    Raises:
        SnapshotError: the snapshot cannot be imported (the message says why and what to do).
    """
    slot, training, _privacy, artifacts, _max_drop = slot_configs(config=config, name=domain)
    if slot.is_forecast or slot.task not in ("classification", "causal_lm"):
        raise SnapshotError(f"{domain}: task {slot.task!r} has no pretrained transformers base; import-base is for "
                            "classification and causal_lm domains")
    with tempfile.TemporaryDirectory(prefix="import-") as tmp:
        snapshot = Path(source)
        if source.startswith("s3://"):
            snapshot = download_snapshot(config=config, store=store, uri=source, dest=Path(tmp) / "snapshot")
        info = inspect_snapshot(snapshot, task=slot.task)
        check_method(info, training.method)
        labels = _base_texts(domain, slot.task, training, sample_dir)[1] if slot.task == "classification" else []
        files = {name: _sha256(snapshot / name) for name in info.files}
        provenance = {"source": source, "revision": revision or "", "licence": licence or licence_text(snapshot),
                      "model_type": info.model_type, "parameters": info.parameters,
                      "dp_methods": list(info.methods), "tied_embeddings": info.tied_embeddings, "files": files}
        folder, _info = prepare_base_folder(snapshot, Path(tmp) / "model", task=slot.task, labels=labels,
                                            max_length=training.max_length, seed=seed, provenance=provenance)
        ref = _publish_base(store, folder, domain=domain, task=slot.task, prefix=artifacts.prefix,
                            metrics={"base": "imported", "provenance": provenance}, who=who,
                            why=f"imported base model {info.model_type} from {source}", card=True)
    return {"domain": domain, "artifact_id": ref.artifact_id, "root": ref.root, "task": slot.task, "labels": labels,
            "model_type": info.model_type, "architecture": info.architecture, "parameters": info.parameters,
            "method": training.method, "dp_methods": list(info.methods), "source": source, "files": len(files)}


def download_snapshot(*, config: PipelineConfig, store: ObjectStore, uri: str, dest: Path) -> Path:
    """Copy every object under ``s3://bucket/prefix/`` into ``dest``; names are checked before a byte is written.

    The project's bucket is read through ``store`` (its identity, its encryption); another bucket through a store
    opened with the same endpoint and credentials.
    """
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise SnapshotError(f"{uri}: give s3://bucket/prefix (the folder of the snapshot's files)")
    source = store if bucket == config.storage.bucket else open_store(dataclasses.replace(config.storage, bucket=bucket))
    keys = [info.key for info in source.list(prefix + "/")]
    if not keys:
        raise SnapshotError(f"{uri}: no objects under this prefix")
    names = check_member_names([key[len(prefix) + 1:] for key in keys])
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = safe_member_path(dest, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.get(f"{prefix}/{name}"))
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_base_folder(*, task: str, training: TrainingConfig, records: list[Any], labels: list[str], out_dir: Path,
                      size: str, seed: int, forecast: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Write a base model folder for ``task`` from ``training.base`` (see :func:`build_domain_base`).

    Args:
        records: the domain's public sample texts (classification; causal_lm: ``question\\nanswer``), kept out of
            public pretraining; for a forecaster, the generated series.
        labels: class names in logit order (classification).
        forecast: the slot is a forecaster (random-init DPLSTM, whatever ``training.base`` says).
    """
    # torch/transformers/jieba: only when a model is built.
    from pipelines.train.models import build_base_model

    if forecast or (task == "classification" and training.base in ("scratch", "minilm")):
        return build_base_model(task=task, texts_or_series=records, out_dir=out_dir, labels=labels, size=size,
                                seed=seed, base="scratch" if forecast else training.base,
                                max_length=training.max_length)
    if task == "classification":  # public-pretrained
        from pipelines.pretrain.corpora import public_chinese
        from pipelines.pretrain.encoder import build_public_encoder

        return build_public_encoder(corpora=public_chinese(exclude_texts=records), out_dir=out_dir, labels=labels,
                                    size=size, seed=seed, max_length=training.max_length, log=log)
    if training.base == "minilm":
        raise RunRefused(f"training.base=minilm is an encoder: task {task!r} needs base scratch or public-pretrained")
    from pipelines.pretrain.causal_lm import public_dialogues, pretrain_causal_lm

    return pretrain_causal_lm(dialogues=public_dialogues(exclude_texts=records), out_dir=out_dir, size=size,
                              seed=seed, max_length=training.max_length, epochs=_PRETRAIN_EPOCHS[size], log=log)


# Epochs of the causal LM's public pretraining per size: tiny is for tests, small for the demo (4 x 15 steps of batch
# 32; not timed on an idle host: on the shared 2-core host under load one epoch took ~3 minutes).
_PRETRAIN_EPOCHS = {"tiny": 1, "small": 4}


def pretraining_summary(folder: Path) -> dict[str, Any]:
    """What a base folder was trained on, for its manifest: ``{"pretraining": {...}}``."""
    from pipelines.modeling import read_descriptor

    descriptor = read_descriptor(folder)
    record = descriptor.get("pretraining")
    if record is None and descriptor.get("base") == "minilm":
        record = {"private_data": False, "weights": "sentence-transformers/all-MiniLM-L6-v2 (public pretrained)",
                  "tokenizer": "the encoder's own"}
    elif record is None:
        record = {"private_data": False, "weights": "random init",
                  "tokenizer": "trained on the bundled sample's texts (public)" if descriptor.get("task") != "forecast"
                  else None}
    return {"pretraining": record}


def evaluation_texts(domain: str, sample_dir: Path) -> list[str]:
    """The texts of the domain's public evaluation set (``<sample>/evaluation/<domain>.jsonl``, if the sample has
    one): public pretraining must not see what the gate measures on (``text``, or ``question\\nanswer``)."""
    path = Path(sample_dir) / "evaluation" / f"{domain}.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line.strip() else {}
        if isinstance(row.get("question"), str) and isinstance(row.get("answer"), str):
            out.append(f"{row['question']}\n{row['answer']}")
        elif isinstance(row.get("text"), str):
            out.append(row["text"])
    return out


def _base_texts(domain: str, task: str, training: TrainingConfig,
                sample_dir: Path | None) -> tuple[list[str], list[str]]:
    """Public texts (and labels) a text model's tokenizer is trained on: the bundled sample of the domain."""
    try:
        records = sample_records(domain, **({"sample_dir": sample_dir} if sample_dir else {}))
    except FileNotFoundError:
        # A domain without a public sample (e.g. code, trained on private repositories only) has nothing public to
        # build a tokenizer and base from: it brings its own pretrained base.
        raise RunRefused(f"{domain}: the bundled sample has no public text to build a base model from; import "
                         f"one: python -m pipelines model import-base --domain {domain} --from SNAPSHOT_DIR") from None
    if task == "classification":
        texts = [r["text"] for r in records if isinstance(r.get("text"), str)]
        labels = sorted({r["label"] for r in records if isinstance(r.get("label"), str)}
                        | set(training.labels))
    else:
        texts = [f"{r['question']}\n{r['answer']}" for r in records
                 if isinstance(r.get("question"), str) and isinstance(r.get("answer"), str)]
        labels = []
    if len(texts) < 10:
        raise RunRefused(f"{domain}: only {len(texts)} public texts to build a tokenizer from")
    return texts, labels
