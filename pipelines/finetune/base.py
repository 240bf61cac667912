"""Base models: the start of a slot's first weekly run and of every monthly retrain.

A base model is an artifact under ``<artifacts prefix>/base/<slot>/<artifact id>/``, made current by a numbered
create-only promotion record under ``<artifacts prefix>/base/<slot>/promotions/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.artifacts import (
    ArtifactRef, artifacts_config, build_manifest, current_production, force_gate, load_ref, promote, push_artifact,
)
from pipelines.config import PipelineConfig
from pipelines.finetune.handover import RunRefused
from pipelines.finetune.inputs import code_version, slot_configs
from pipelines.forecast import base_series
from pipelines.label.data import sample_records
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

    The tokenizer and the label set come from public text (the bundled sample's landing files of the
    domain), never from curated private records: a vocabulary is not differentially private. A
    forecaster slot (``finance_forecast``) has no vocabulary: its random-init DPLSTM records only the
    number of generated series (:func:`pipelines.forecast.base_series`).
    """
    from pipelines.train.models import build_base_model  # torch/transformers: only when a model is built

    slot, training, _privacy, artifacts, _max_drop = slot_configs(config, domain)
    if slot.is_forecast:
        texts: list[Any] = base_series(config, slot, seed=seed)
        labels: list[str] = []
        source = {"series": len(texts), "series_source": f"generated (make_sample_series seed {seed})"}
    else:
        texts, labels = _base_texts(domain, slot.task, training, sample_dir)
        source = {"tokenizer_texts": len(texts), "tokenizer_source": "data/sample (public)"}
    with tempfile.TemporaryDirectory(prefix="base-") as tmp:
        folder = build_base_model(task=slot.task, texts_or_series=texts, out_dir=Path(tmp) / "model", labels=labels,
                                  size=size or training.size, seed=seed,
                                  base="scratch" if slot.is_forecast else training.base,
                                  max_length=training.max_length)
        build_manifest(folder, domain=domain, task=slot.task, kind="base", version="0.0", parent=None,
                       data=[], code_version=code_version(), dp=None, metrics=source, created_by=who)
        ref = push_artifact(store, folder, domain=domain, prefix=artifacts.prefix)  # <prefix>/base/<slot>/<id>
    promote(store, domain, ref, gate=force_gate(reason="base model"), who=who, why="base model",
            prefix=f"{artifacts.prefix}/{BASE_PREFIX_PART}")
    return {"domain": domain, "artifact_id": ref.artifact_id, "root": ref.root, "task": slot.task, "labels": labels}


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
