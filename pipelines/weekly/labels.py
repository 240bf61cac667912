"""Labelling at scale: the labeller's forward passes run per shard, in the ``label_shard`` task.

``label_shard`` is mapped over the week's shards (one per shard; the whole partition for a week of one
shard) and runs on the ``gpu`` queue: a CeleryExecutor GPU worker predicts on its GPU, any other worker on
its CPU (INT8 when the labeller's check passed). It reads the shard's governed rows, predicts the records
that need a label (no label, not feedback) in batches, and stages ``(sha256 of the text,
label, confidence)`` under the partition's ``label-predictions/`` (not the shard's staging: gather_shards
deletes that). ``auto_label`` decides over the whole partition after dedup, as before (reviews win, the
review queue is drawn over every prediction); it takes a record's prediction from there by its text's
digest, and predicts in-line only what no shard predicted (a week run by the CLI chain, or a shard task
that failed: a warning says how many).

A prediction is a function of the text (the labeller is deterministic, its confidence rounded to 4 places),
so predicting per shard, before dedup, labels the same records the same way as one pass after dedup;
duplicates (5 % of a typical week) are predicted and not used.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.label.registry import fetch_labeller
from pipelines.serialize import get_json, put_json
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.batches import Progress, download, iter_staged_rows, log, upload, work_folder
from pipelines.weekly.layout import PartitionRef

PREDICTIONS = "label-predictions"
COLUMNS = ["text", "label", "source"]


def needs_label(row: dict) -> bool:
    """A record the labeller labels: no label of its own and not feedback (a reviewed record is predicted
    too: its prediction takes part in drawing the review queue; the person's label wins at auto_label)."""
    return row["label"] is None and row["source"] != "feedback"


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def predictions_key(config: PipelineConfig, part: PartitionRef) -> str:
    """Where ``label_shard`` stages one shard's predictions: the partition's staging, not the shard's."""
    name = "all" if part.shard is None else f"shard-{part.shard:05d}"
    return part.shard_ref(None).staging(config, f"{PREDICTIONS}/{name}.parquet")


def label_shard(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> dict[str, Any]:
    """Predict the labels one shard needs (``key``: its governed rows) and stage them; returns the counts,
    the device, records/s and the labeller version (``predicted`` 0 and a note when the domain has none)."""
    started = time.perf_counter()
    label = config.for_domain(part.domain).label
    labeller, pointer = fetch_labeller(store, label.labeller) if label.labeller else (None, None)
    report_key = predictions_key(config, part).removesuffix(".parquet") + ".json"
    if labeller is None:
        report = {"predicted": 0, "labeller": label.labeller, "version": None,
                  "note": "no labeller published: records keep their labels"}
        put_json(store, report_key, report)
        return report
    labeller.to(label.device)
    batch_size = label.predict_batch_size(labeller.device, labeller.config.predict_batch_size)
    progress = Progress("label_shard", part.label)
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("digest", pa.binary(32)), ("label", pa.string()), ("confidence", pa.float64())])
    rows_in = predicted = 0
    with work_folder("label-shard") as folder:
        source = download(store, key, folder)
        path = folder / "predictions.parquet"
        with pq.ParquetWriter(path, schema, compression="zstd") as out:
            for batch in iter_staged_rows(source, batch_rows=config.ingest.batch_rows, columns=COLUMNS):
                rows_in += len(batch)
                todo = [r["text"] for r in batch if needs_label(r)]
                if todo:
                    found = labeller.predict(todo, batch_size=batch_size)
                    out.write_table(pa.table({"digest": [text_digest(t) for t in todo],
                                              "label": [lab for lab, _ in found],
                                              "confidence": [round(float(c), 4) for _, c in found]}, schema=schema))
                    predicted += len(todo)
                progress.add(len(todo))
        source.unlink()
        upload(store, predictions_key(config, part), path)
    seconds = time.perf_counter() - started
    report = {"predicted": predicted, "rows": rows_in, "labeller": label.labeller, "version": pointer["version"],
              "device": labeller.device, "batch_size": batch_size, "seconds": round(seconds, 3),
              "records_per_s": round(predicted / progress.seconds, 1) if progress.seconds > 0 else None}
    put_json(store, report_key, report)
    log.info("label_shard %s: %d of %d records predicted on %s in %.1f s (%.0f records/s, batch %d)", part.label,
             predicted, rows_in, labeller.device, seconds, predicted / max(progress.seconds, 1e-9), batch_size)
    return report


class Predictions:
    """The staged predictions of a partition's shards, looked up by text digest.

    Held as numpy arrays (the first 8 bytes of each digest as a sorted uint64, the full digests, a label
    index and the confidence): ~50 bytes a prediction, 100 MB for a 2M-record week, not a dict of rows.
    """

    def __init__(self, digests: Sequence[bytes], labels: Sequence[str], confidences: Sequence[float]) -> None:
        import numpy as np

        self.names = sorted(set(labels))
        index = {name: i for i, name in enumerate(self.names)}
        full = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32) if digests else \
            np.zeros((0, 32), dtype=np.uint8)
        prefix = full[:, :8].copy().view(">u8").ravel() if len(full) else np.zeros(0, dtype=">u8")
        order = np.argsort(prefix, kind="stable")
        self._prefix = prefix[order].astype(np.uint64)
        self._full = full[order]
        self._label = np.asarray([index[x] for x in labels], dtype=np.uint16)[order]
        self._confidence = np.asarray(confidences, dtype=np.float64)[order]

    def __len__(self) -> int:
        return len(self._prefix)

    def get(self, text: str) -> tuple[str, float] | None:
        import numpy as np

        digest = text_digest(text)
        key = np.uint64(int.from_bytes(digest[:8], "big"))
        i = int(np.searchsorted(self._prefix, key))
        while i < len(self._prefix) and self._prefix[i] == key:
            if self._full[i].tobytes() == digest:
                return self.names[int(self._label[i])], float(self._confidence[i])
            i += 1
        return None


def load_predictions(config: PipelineConfig, store: ObjectStore, part: PartitionRef,
                     version: str | None) -> Predictions | None:
    """Every shard's staged predictions made with labeller ``version`` (others are ignored: a labeller
    published between label_shard and auto_label), or None when there are none."""
    import pyarrow.parquet as pq

    prefix = part.shard_ref(None).staging(config, f"{PREDICTIONS}/")
    digests: list[bytes] = []
    labels: list[str] = []
    confidences: list[float] = []
    files = 0
    with work_folder("predictions") as folder:
        for obj in sorted(store.list(prefix), key=lambda o: o.key):
            if not obj.key.endswith(".json"):
                continue
            try:
                report = get_json(store, obj.key)
            except NotFound:
                continue
            if not report.get("predicted") or report.get("version") != version:
                continue
            path = download(store, obj.key.removesuffix(".json") + ".parquet", folder, "predictions.parquet")
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
                digests.extend(batch.column("digest").to_pylist())
                labels.extend(batch.column("label").to_pylist())
                confidences.extend(batch.column("confidence").to_pylist())
            path.unlink()
            files += 1
    if not files:
        return None
    log.info("auto_label %s: %d predictions from %d label_shard task(s)", part.label, len(digests), files)
    return Predictions(digests, labels, confidences)


def predict_missing(labeller, texts: Sequence[str],
                    predictions: Predictions | None) -> tuple[list[tuple[str, float]], int]:
    """``(label, confidence)`` of each text (confidence rounded to 4 places): the staged prediction, else
    the labeller's (``labeller()`` gives it), in-line; and how many were predicted in-line."""
    found = [predictions.get(t) if predictions is not None else None for t in texts]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        for i, (lab, conf) in zip(missing, labeller().predict([texts[i] for i in missing])):
            found[i] = (lab, round(float(conf), 4))
    return found, len(missing)  # type: ignore[return-value]
