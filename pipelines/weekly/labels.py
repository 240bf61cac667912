"""Labelling at scale: the labeller's forward passes run per shard, in the ``label_shard`` task.

``label_shard`` is mapped over the week's shards (one per shard; the whole partition for a week of one
shard) and runs on the ``gpu`` queue: a CeleryExecutor GPU worker predicts on its GPU, any other worker on
its CPU (INT8 when the labeller's check passed). It reads the shard's governed rows, predicts the records
that need a label (no label, not feedback) in batches, and stages ``(sha256 of the text,
label, confidence)`` under the partition's ``label-predictions/``. After dedup, ``label_part`` labels one
part's kept rows (the DAG's ``finish_shard``, per shard): a record's prediction is taken from its shard's
staged predictions by its text's digest (predicted in-line only when that shard's label_shard did not run:
a warning says how many), reviews win; it stages the (id, label, confidence) of every record it labelled.
``finish_labels`` then draws the review queue once over the whole partition's predictions, in record order
(its texts are filled in by publish_partition, which reads every row anyway). ``auto_label`` runs both.

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
from pipelines.review import apply_reviews, build_queue, load_reviews
from pipelines.serialize import ParquetParts, get_json, jsonl_bytes, put_json
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.batches import Progress, download, iter_staged_rows, log, upload, work_folder
from pipelines.weekly.layout import PartitionRef
from pipelines.weekly.parts import name_parts, sibling, staged_parts
from pipelines.weekly.results import StepResult

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


# ------------------------------------------------------------------------------------ auto_label
LABELLED = "labelled"
TODO = "label-todo.json"  # beside a labelled part: (id, label, confidence) of each record it predicted
PART_REPORT = "labelled.part.json"


def label_part(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> str:
    """Label one part's deduplicated rows (``key``; ``part``: its shard, whose predictions it takes):
    a record's own label stays (``source``), one that needs a label gets its prediction (``predicted``),
    an imported review wins (``reviewed``). Writes the rows beside ``key`` with the (id, label, confidence)
    of every record it predicted and its counts, then deletes its input. Returns the rows' key.
    """
    written, report_key = sibling(key, f"{LABELLED}.parquet"), sibling(key, PART_REPORT)
    if not store.exists(key) and store.exists(written) and store.exists(report_key):
        log.info("auto_label %s: already labelled in this run", part.label)
        return written
    name = config.for_domain(part.domain).label.labeller
    reviews = load_reviews(store, domain=part.domain, interval=part.interval.name)
    reviewed_ids = {str(i) for i in reviews}
    loaded: dict[str, Any] = {}
    todo_ids: list[str] = []
    predictions: list[tuple[str, float]] = []
    totals = {"in": 0, "todo": 0, "inline": 0, "rows": 0, "reviewed": 0, "agreed": 0}

    def labeller():
        if "labeller" not in loaded:
            loaded["labeller"], loaded["pointer"] = fetch_labeller(store, name) if name else (None, None)
        return loaded["labeller"]

    def staged():
        if "staged" not in loaded:
            version = loaded["pointer"]["version"] if loaded.get("pointer") else None
            loaded["staged"] = load_predictions(config, store, part, version)
        return loaded["staged"]

    batch_rows = config.ingest.batch_rows
    progress = Progress("auto_label", part.label)
    with work_folder("label-part") as folder:
        source = download(store, key, folder)
        with ParquetParts(folder / "out", batch_rows=batch_rows) as out:
            for rows in iter_staged_rows(source, batch_rows=batch_rows):
                totals["in"] += len(rows)
                for row in rows:
                    if row["label"] is not None:
                        row["label_source"] = "source"
                todo = [r for r in rows if needs_label(r)]
                if todo and labeller() is not None:
                    predicted, inline = predict_missing(labeller, [r["text"] for r in todo], staged())
                    totals["inline"] += inline
                    for row, (lab, confidence) in zip(todo, predicted):
                        row.update(label=lab, label_source="predicted", label_confidence=confidence)
                    todo_ids.extend(r["id"] for r in todo)
                    predictions.extend(predicted)
                totals["todo"] += len(todo)
                if reviews:
                    rows, stats = apply_reviews(rows, reviews)
                    for row in rows:
                        if row["id"] in reviewed_ids:
                            row["label_source"] = "reviewed"
                    totals["rows"] += stats.rows
                    totals["reviewed"] += stats.reviewed
                    totals["agreed"] += stats.agreed
                out.write(rows)
                progress.add(len(rows))
            source.unlink()
            (path,) = out.close()
        upload(store, written, path)
    if totals["inline"]:  # this shard's label_shard task did not run, or its output is lost
        log.warning("auto_label %s: %d of %d records had no label_shard prediction and were predicted here",
                    part.label, totals["inline"], totals["todo"])
    put_json(store, sibling(key, TODO), {"ids": todo_ids, "labels": [lab for lab, _ in predictions],
                                         "confidences": [c for _, c in predictions]})
    put_json(store, report_key, {**totals, "labelled": loaded.get("labeller") is not None,
                                 "pointer": loaded.get("pointer")})
    store.delete(key)
    progress.done()
    return written


def finish_labels(*, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str,
                  seconds: float = 0.0) -> StepResult:
    """The partition's auto_label report and review queue, from its labelled parts (``key``: the
    partition's deduplicated rows, whose parts were labelled): at least ceil(share * n) of the predicted
    records, plus every low-confidence one, drawn over the whole partition in record order (seeded by the
    partition, so a re-run picks the same ones). The queue's texts are filled in at publish."""
    review = config.for_domain(part.domain).label.review
    name = config.for_domain(part.domain).label.labeller
    parts = staged_parts(store, key)
    totals = {"in": 0, "todo": 0, "inline": 0, "rows": 0, "reviewed": 0, "agreed": 0}
    todo_ids: list[str] = []
    predictions: list[tuple[str, float]] = []
    labelled, pointer = False, None
    for k, part_key in enumerate(parts):
        try:
            report = get_json(store, sibling(part_key, PART_REPORT))
        except NotFound:
            raise RuntimeError(f"{part.label}: part {k + 1} of {len(parts)} was not labelled (its finish_shard task "
                               "failed: see its log); run the partition again from ingest_landing") from None
        for k in totals:
            totals[k] += report[k]
        labelled = labelled or report["labelled"]
        pointer = pointer or report["pointer"]
        todo = get_json(store, sibling(part_key, TODO))
        todo_ids.extend(todo["ids"])
        predictions.extend(zip(todo["labels"], todo["confidences"]))
    queue: list[dict] = []
    if labelled:
        queue = build_queue([{"id": i, "text": None} for i in todo_ids], predictions, domain=part.domain,
                            partition_key=f"{part.domain}/{part.interval.name}", config=review)
    reviewed = totals["reviewed"]  # rows and reviewed count only where the partition has reviews
    counts = {"unlabelled": totals["todo"], "predicted": totals["todo"] if labelled else 0, "queued": len(queue),
              "low_confidence": sum(1 for q in queue if q["reason"] == "low_confidence"),
              "reviewed": reviewed,
              "reviewed_share": reviewed / totals["rows"] if totals["rows"] else 0.0,
              "agreement": totals["agreed"] / reviewed if reviewed else None}
    described = ({"name": name, "version": pointer["version"], "labels": pointer.get("labels")} if pointer else
                 {"name": name, "version": None, "note": "no labeller published: records keep their labels"})
    store.put(part.staging(config, "review_queue.jsonl"), jsonl_bytes(queue))
    written = part.staging(config, f"{LABELLED}.parquet")
    name_parts(store, written, [sibling(p, f"{LABELLED}.parquet") for p in parts])
    result = StepResult(step=LABELLED, key=written, rows_in=totals["in"], kept=totals["in"], rejected=0,
                        counts=counts, extra={"labeller": described}, seconds=round(seconds, 3))
    put_json(store, part.staging(config, f"{LABELLED}.json"), result.to_dict())
    log.info("auto_label %s: %d records, %d predicted, %d queued for review, over %d part(s)", part.label,
             totals["in"], counts["predicted"], len(queue), len(parts))
    return result


class AutoLabelStep:
    """Label unlabelled records with the domain's labeller; reviewed labels (imported with
    ``python -m pipelines review import``) win over predictions; stage the review queue.

    ``label_part`` on every part of the deduplicated rows in this process (the DAG runs them as shard
    tasks), then ``finish_labels`` once over the partition.
    """

    name = LABELLED
    output = LABELLED
    __name__ = "auto_label"

    def __call__(self, *, config: PipelineConfig, store: ObjectStore, part: PartitionRef, key: str) -> StepResult:
        started = time.perf_counter()
        parts = staged_parts(store, key)
        for k, part_key in enumerate(parts):
            label_part(config=config, store=store, part=part.shard_ref(None if len(parts) == 1 else k), key=part_key)
        return finish_labels(config=config, store=store, part=part, key=key, seconds=time.perf_counter() - started)
