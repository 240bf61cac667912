"""``review export|import`` command line (the lead wires it as ``python -m pipelines review``)."""

from __future__ import annotations

import csv
import json

from pipelines.review import QUEUE_FIELDS, build_queue, write_queue
from pipelines.review.cli import main
from pipelines.storage import LocalObjectStore

INTERVAL = "2026-10-04_2026-10-11"


def _queue(root) -> str:
    store = LocalObjectStore(root)
    records = [{"id": f"MD-{i}", "text": f"note {i}"} for i in range(1, 5)]
    predictions = [("cardiology", 0.4), ("oncology", 0.9), ("oncology", 0.95), ("pharmacy", 0.5)]
    items = build_queue(records, predictions, domain="medical", partition_key=f"medical/{INTERVAL}")
    return write_queue(store, domain="medical", interval=INTERVAL, version="v1", items=items,
                       labels=("cardiology", "oncology", "pharmacy"))["queue"]


def test_export_then_import(tmp_path, capsys):
    root = tmp_path / "bucket"
    key = _queue(root)
    out = tmp_path / "review.csv"
    assert main(["--root", str(root), "export", "--queue", key, "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == {"queue": key, "out": str(out), "rows": 2}
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0].update(review_label="cardiology", reviewer="dr-k")
    rows[1].update(review_label="oncology", reviewer="dr-k")
    with out.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=QUEUE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert main(["--root", str(root), "import", "--queue", key, "--in", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["reviews_key"], result["reviewed"], result["agreed"]) == (
        f"review/medical/{INTERVAL}/reviews-1.jsonl", 2, 1)


def test_import_errors_exit_2_with_the_problems(tmp_path, capsys):
    root = tmp_path / "bucket"
    key = _queue(root)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "MD-1", "review_label": "dermatology", "reviewer": "x"}) + "\n")
    assert main(["--root", str(root), "import", "--queue", key, "--in", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s), nothing was imported" in err
    assert "review_label 'dermatology' is not in the label set" in err


def test_unknown_queue_exits_2(tmp_path, capsys):
    key = f"review/medical/{INTERVAL}/queue-v7.jsonl"
    assert main(["--root", str(tmp_path), "export", "--queue", key, "--out", str(tmp_path / "x.csv")]) == 2
    assert "no committed queue" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "export", "--queue", "not/a/key", "--out", str(tmp_path / "x.csv")]) == 2
    assert "is not a queue key" in capsys.readouterr().err
