"""What a run is evaluated on: the slot's public (or consented) evaluation set, never its private records.

Every number a run publishes about its model (the metrics in the manifest, card and history, the epoch it keeps,
production's baseline and the trivial baseline the gate compares) is computed on this set. It is configured per
model slot (``artifacts.evaluation.<slot>: {source: public, key: evaluation/<slot>/eval.jsonl}``, or ``path:`` a
project file); the sample's sets are built by ``python -m pipelines sample build`` and uploaded by ``sample load``.

A slot with no public set configured is **refused** (rather than evaluated on noised private counts): the private
held-out split stays unused. A forecaster slot is evaluated on generated public series (the seed below, not
derived from any interval), so no series it trains on is in its evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.finetune.handover import RunRefused
from pipelines.finetune.inputs import project_path
from pipelines.forecast import ModelSlot
from pipelines.storage import ObjectStore
from pipelines.store_protocol import NotFound
from pipelines.train.config import TrainingConfig
from pipelines.train.evaluate import evaluation_digest
from pipelines.train.models import make_sample_series

# The generator seed of a forecaster's public evaluation series: fixed, unrelated to any interval's series
# (those are seeded by a hash of the interval name) and to the base model's (seed 0).
FORECAST_EVAL_SEED = 7_919_000_001
_FIELDS = {"classification": ("text", "label"), "causal_lm": ("question", "answer")}


@dataclass(frozen=True)
class EvaluationData:
    """A run's evaluation set.

    Attributes:
        source: ``public`` (what ``metrics.evaluation`` records).
        where: the object key, project path or generator it came from (``metrics.evaluation_set``).
        examples: the examples, in the trainer's format of the slot's task.
        split: their digest (``metrics.split``, shared with the baselines).
    """

    source: str
    where: str
    examples: tuple[dict[str, Any], ...]
    split: str


def evaluation_data(*, config: PipelineConfig, store: ObjectStore, slot: ModelSlot,
                    training: TrainingConfig) -> EvaluationData:
    """The slot's public evaluation set.

    Raises:
        RunRefused: none is configured, it is missing from the store, or its rows do not fit the task.
    """
    if slot.is_forecast:
        series = make_sample_series(FORECAST_EVAL_SEED, training.forecast_series, length=training.forecast_length)
        window = training.forecast_window
        examples = [{"id": f"public/s{i}t{end}", "window": list(points[end - window:end]), "target": points[end]}
                    for i, points in enumerate(series)
                    for end in range(len(points) - training.forecast_eval_tail, len(points))]
        return _data("public", f"generated:seed={FORECAST_EVAL_SEED}", examples)
    setting = config.artifacts.evaluation_for(slot.name)
    if setting is None:
        raise RunRefused(f"{slot.name}: no public evaluation set is configured, and private held-out records are not "
                         f"used for released numbers: set artifacts.evaluation.{slot.name}: {{source: public, key: "
                         f"evaluation/{slot.name}/eval.jsonl}} in config/pipeline.yaml and upload the set (the demo's: "
                         "python -m pipelines sample load)")
    if setting.key:
        try:
            text, where = store.get(setting.key).decode("utf-8"), setting.key
        except NotFound:
            raise RunRefused(f"{slot.name}: the evaluation set {setting.key} is not in the object store: upload it "
                             "(the demo's: python -m pipelines sample load)") from None
    else:
        path = project_path(setting.path)
        if not path.is_file():
            raise RunRefused(f"{slot.name}: the evaluation set {path} does not exist (artifacts.evaluation."
                             f"{slot.name}.path)")
        text, where = path.read_text(encoding="utf-8"), setting.path
    return _data(setting.source, where, _examples(slot, where, text))


def _examples(slot: ModelSlot, where: str, text: str) -> list[dict[str, Any]]:
    fields = _FIELDS[slot.task]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunRefused(f"{slot.name}: {where} line {n} is not JSON ({exc})") from None
        if not isinstance(row, dict) or any(not row.get(f) for f in fields):
            raise RunRefused(f"{slot.name}: {where} line {n} lacks {list(fields)} (a {slot.task} example)")
        out.append({"id": str(row.get("id") or n), **{f: str(row[f]) for f in fields}})
    if not out:
        raise RunRefused(f"{slot.name}: the evaluation set {where} holds no examples")
    return out


def _data(source: str, where: str, examples: list[dict[str, Any]]) -> EvaluationData:
    return EvaluationData(source=source, where=where, examples=tuple(examples), split=evaluation_digest(examples))
