"""Base models: the start of a slot's first weekly run and of every monthly retrain.

A base model is an artifact under ``<artifacts prefix>/base/<slot>/<artifact id>/``, made current by a numbered
create-only promotion record under ``<artifacts prefix>/base/<slot>/promotions/``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactRef, artifacts_config, build_manifest, current_production, force_gate, load_ref, promote, push_artifact,
)
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import RunRefused
from pipelines.finetune.inputs import code_version, slot_configs
from pipelines.forecast import base_series
from pipelines.label.data import SAMPLE_DIR, sample_records
from pipelines.storage import ObjectStore
from pipelines.train.config import TrainingConfig

BASE_PREFIX_PART = "base"  # base models: <artifacts prefix>/base/<slot>/<artifact_id>/


def base_ref(*, config: PipelineConfig, store: ObjectStore, domain: str) -> ArtifactRef | None:
    """The current base model of a slot (newest promotion under ``<prefix>/base``), or None."""
    prefix = artifacts_config(config).prefix
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
    slot, training, _privacy, artifacts, _max_drop = slot_configs(config, domain)
    if slot.is_forecast:
        texts: list[Any] = base_series(config, slot, seed=seed)
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
        build_manifest(folder, domain=domain, task=slot.task, kind="base", version="0.0", parent=None,
                       data=[], code_version=code_version(), dp=None, metrics=source, created_by=who)
        ref = push_artifact(store, folder, domain=domain, prefix=artifacts.prefix)  # <prefix>/base/<slot>/<id>
    promote(store, domain, ref, gate=force_gate(reason="base model"), who=who, why="base model",
            prefix=f"{artifacts.prefix}/{BASE_PREFIX_PART}")
    return {"domain": domain, "artifact_id": ref.artifact_id, "root": ref.root, "task": slot.task, "labels": labels}


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
    records = sample_records(domain, **({"sample_dir": sample_dir} if sample_dir else {}))
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
