"""The review queue: build, write (commit marker last), export, validated import, apply."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from pipelines.review import (
    QUEUE_FIELDS,
    ReviewConfig,
    ReviewImportError,
    apply_reviews,
    build_queue,
    export_queue,
    import_reviews,
    load_reviews,
    meta_key,
    parse_queue_key,
    queue_key,
    queue_partition,
    read_queue,
    write_queue,
)
from pipelines.storage import LocalObjectStore, NotFound

LABELS = ("contract", "criminal", "employment")
INTERVAL = "2026-10-04_2026-10-11"
NOW = dt.datetime(2026, 10, 12, 9, 30, tzinfo=dt.timezone.utc)


def _records(n: int = 20) -> list[dict]:
    return [{"id": f"LG-{i:03d}", "text": f"matter {i}", "label": None} for i in range(1, n + 1)]


def _predictions(n: int = 20) -> list[tuple[str, float]]:
    # LG-004 and LG-011 are uncertain; every other prediction is confident.
    return [(LABELS[i % 3], 0.41 if i in (4, 11) else 0.93) for i in range(1, n + 1)]


class _StubLabeller:
    labels = LABELS
    version = "en-stub"

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        return _predictions(len(texts))


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "bucket")


@pytest.fixture
def queued(store):
    meta = queue_partition(store, domain="legal", interval=INTERVAL, version="v1", records=_records(),
                           labeller=_StubLabeller())
    return meta["queue"]


def _reviewed_csv(store, key, path, fill: dict[str, tuple[str, str, str]]) -> None:
    """Export ``key`` to CSV and fill (review_label, reviewer, reviewed_at) for some ids, like a reviewer."""
    export_queue(store, key, path)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["id"] in fill:
            row["review_label"], row["reviewer"], row["reviewed_at"] = fill[row["id"]]
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=QUEUE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def test_build_queue_selects_low_confidence_and_a_seeded_share():
    items = build_queue(_records(), _predictions(), domain="legal", partition_key=f"legal/{INTERVAL}")
    assert [(i["id"], i["reason"]) for i in items] == [
        ("LG-003", "sampled"), ("LG-004", "low_confidence"), ("LG-011", "low_confidence")]
    assert items[1] == {"id": "LG-004", "domain": "legal", "text": "matter 4", "predicted_label": "criminal",
                        "confidence": 0.41, "reason": "low_confidence", "review_label": None, "reviewer": None,
                        "reviewed_at": None}
    assert list(items[0]) == list(QUEUE_FIELDS)


def test_build_queue_respects_the_config():
    items = build_queue(_records(), _predictions(), domain="legal", partition_key=f"legal/{INTERVAL}",
                        config=ReviewConfig(share=0.5, low_confidence=0.5))
    assert len(items) == 10
    assert {i["id"] for i in items if i["reason"] == "low_confidence"} == {"LG-004", "LG-011"}


def test_queue_is_written_with_a_marker_last_and_never_rewritten(store, queued):
    assert queued == queue_key("legal", INTERVAL, "v1") == f"review/legal/{INTERVAL}/queue-v1.jsonl"
    assert parse_queue_key(queued) == {"prefix": "review", "domain": "legal", "interval": INTERVAL, "version": "v1"}
    items, meta = read_queue(store, queued)
    assert [i["id"] for i in items] == ["LG-003", "LG-004", "LG-011"]
    assert meta["labels"] == list(LABELS)
    assert meta["labeller"] == {"version": "en-stub"}
    assert meta["counts"] == {"queued": 3, "low_confidence": 2, "sampled": 1}
    first_line = store.get(queued).decode().splitlines()[0]
    assert list(json.loads(first_line)) == list(QUEUE_FIELDS)
    # A rerun finds the marker and does nothing (not even predicting).
    stub = _StubLabeller()
    again = queue_partition(store, domain="legal", interval=INTERVAL, version="v1", records=_records(), labeller=stub)
    assert again["written"] is False and stub.calls == 0
    assert again["sha256"] == meta["sha256"]


def test_an_uncommitted_queue_is_overwritten(store):
    key = queue_key("legal", INTERVAL, "v2")
    store.put(key, b"partial garbage from a crashed run\n")
    meta = write_queue(store, domain="legal", interval=INTERVAL, version="v2", labels=LABELS,
                       items=build_queue(_records(), _predictions(), domain="legal", partition_key="legal/x"))
    assert meta["written"] is True
    assert len(read_queue(store, key)[0]) == 3


def test_write_queue_refuses_predictions_outside_the_label_set(store):
    items = build_queue(_records(), _predictions(), domain="legal", partition_key="k")
    with pytest.raises(ValueError, match=r"predicted label\(s\) \['employment'\] are not in the label set"):
        write_queue(store, domain="legal", interval=INTERVAL, version="v1", items=items,
                    labels=("contract", "criminal"))
    assert not store.exists(queue_key("legal", INTERVAL, "v1"))


@pytest.mark.parametrize("bad", [{"domain": "le/gal"}, {"interval": "../x"}, {"version": ""}])
def test_keys_refuse_path_tricks(bad):
    args = {"domain": "legal", "interval": INTERVAL, "version": "v1", **bad}
    with pytest.raises(ValueError, match="use letters, digits"):
        queue_key(args["domain"], args["interval"], args["version"])


def test_reading_an_uncommitted_queue_says_so(store):
    key = queue_key("legal", INTERVAL, "v9")
    store.put(key, b"{}\n")
    with pytest.raises(NotFound, match="no committed queue"):
        read_queue(store, key)


def test_a_queue_edited_in_place_is_refused(store, queued):
    store.put(queued, store.get(queued) + b'{"id": "LG-999"}\n')
    with pytest.raises(ValueError, match="edited in place"):
        read_queue(store, queued)


def test_export_csv_and_jsonl(store, queued, tmp_path):
    assert export_queue(store, queued, tmp_path / "q.csv") == 3
    raw = (tmp_path / "q.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # spreadsheets read UTF-8 (Chinese text) only with the BOM
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == ",".join(QUEUE_FIELDS)
    assert lines[1] == "LG-003,legal,matter 3,contract,0.93,sampled,,,"
    assert lines[2] == "LG-004,legal,matter 4,criminal,0.41,low_confidence,,,"
    assert export_queue(store, queued, tmp_path / "q.jsonl") == 3
    assert (tmp_path / "q.jsonl").read_bytes() == store.get(queued)
    with pytest.raises(ValueError, match="use a .csv or .jsonl"):
        export_queue(store, queued, tmp_path / "q.xlsx")


def test_import_writes_create_only_reviews_and_is_idempotent(store, queued, tmp_path):
    path = tmp_path / "reviewed.csv"
    _reviewed_csv(store, queued, path, {"LG-004": ("criminal", "ana", ""),
                                        "LG-011": ("contract", "bo", "2026-10-12T08:00:00+02:00")})
    result = import_reviews(store, queued, path, now=NOW)
    assert result.to_dict() == {"queue": queued, "reviews_key": f"review/legal/{INTERVAL}/reviews-1.jsonl",
                                "written": True, "reviewed": 2, "unreviewed": 1, "agreed": 1}
    lines = [json.loads(x) for x in store.get(result.reviews_key).decode().splitlines()]
    assert lines == [
        {"id": "LG-004", "predicted_label": "criminal", "review_label": "criminal", "reviewer": "ana",
         "reviewed_at": "2026-10-12T09:30:00Z", "queue": queued},
        {"id": "LG-011", "predicted_label": "employment", "review_label": "contract", "reviewer": "bo",
         "reviewed_at": "2026-10-12T06:00:00Z", "queue": queued},
    ]
    again = import_reviews(store, queued, path, now=NOW + dt.timedelta(days=1))
    assert (again.reviews_key, again.written) == (result.reviews_key, False)
    # The remaining row reviewed later: a new file, numbered next.
    _reviewed_csv(store, queued, path, {"LG-003": ("employment", "ana", "")})
    later = import_reviews(store, queued, path, now=NOW)
    assert (later.reviews_key, later.written, later.reviewed) == (f"review/legal/{INTERVAL}/reviews-2.jsonl", True, 1)
    assert sorted(load_reviews(store, domain="legal", interval=INTERVAL)) == ["LG-003", "LG-004", "LG-011"]


def test_import_of_nothing_reviewed_writes_nothing(store, queued, tmp_path):
    export_queue(store, queued, tmp_path / "q.jsonl")
    result = import_reviews(store, queued, tmp_path / "q.jsonl", now=NOW)
    assert (result.reviews_key, result.written, result.reviewed, result.unreviewed) == (None, False, 0, 3)
    assert [i.key for i in store.list(f"review/legal/{INTERVAL}/reviews")] == []


def test_import_collects_every_problem_and_writes_nothing(store, queued, tmp_path):
    path = tmp_path / "reviewed.jsonl"
    rows = [
        {"id": "LG-004", "review_label": "tort", "reviewer": "ana"},
        {"id": "LG-011", "review_label": "contract", "reviewer": ""},
        {"id": "LG-777", "review_label": "contract", "reviewer": "ana"},
        {"id": "LG-003", "review_label": "contract", "reviewer": "ana", "reviewed_at": "last Tuesday"},
        {"id": "LG-004", "review_label": "contract", "reviewer": "ana"},
        {"review_label": "contract", "reviewer": "ana"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ReviewImportError) as info:
        import_reviews(store, queued, path, now=NOW)
    assert info.value.errors == [
        "line 1: id 'LG-004': review_label 'tort' is not in the label set ['contract', 'criminal', 'employment']",
        "line 2: id 'LG-011': review_label given but reviewer is empty; add who reviewed it",
        f"line 3: unknown id 'LG-777' (not in {queued}; was the file exported from another queue?)",
        "line 4: id 'LG-003': reviewed_at 'last Tuesday' is not ISO-8601 (e.g. 2026-10-12T09:30:00Z); "
        "or leave it empty for the import time",
        "line 5: id 'LG-004' repeats line 1; keep one row per id",
        "line 6: no id",
    ]
    assert "6 problem(s), nothing was imported" in str(info.value)
    assert list(store.list(f"review/legal/{INTERVAL}/reviews")) == []


def test_import_refuses_a_csv_without_the_review_columns(store, queued, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,label\nLG-004,contract\n", encoding="utf-8")
    with pytest.raises(ReviewImportError, match=r"missing column\(s\) \['review_label', 'reviewer'\]"):
        import_reviews(store, queued, path)


def test_import_reads_a_gb18030_csv(store, tmp_path):
    items = [{"id": "PR-1", "domain": "product_reviews", "text": "质量很好", "predicted_label": "positive",
              "confidence": 0.55, "reason": "low_confidence", "review_label": None, "reviewer": None,
              "reviewed_at": None}]
    meta = write_queue(store, domain="product_reviews", interval=INTERVAL, version="v1", items=items,
                       labels=("negative", "positive"))
    path = tmp_path / "r.csv"
    path.write_bytes(("id,text,review_label,reviewer\nPR-1,质量很好,positive,张三\n").encode("gb18030"))
    result = import_reviews(store, meta["queue"], path, now=NOW)
    assert (result.reviewed, result.agreed) == (1, 1)
    assert json.loads(store.get(result.reviews_key))["reviewer"] == "张三"


def test_apply_reviews_reviewed_labels_win_and_stats():
    rows = [{"id": f"r{i}", "label": "a"} for i in range(10)]
    reviews = [{"id": "r0", "review_label": "a"}, {"id": "r1", "review_label": "b"},
               {"id": "r2", "review_label": "b"}, {"id": "r2", "review_label": "a"},  # later wins
               {"id": "zz", "review_label": "b"}]
    out, stats = apply_reviews(rows, reviews)
    assert [r["label"] for r in out] == ["a", "b", "a"] + ["a"] * 7
    assert rows[1]["label"] == "a"  # inputs untouched
    assert stats.to_dict() == {"rows": 10, "reviewed": 3, "share_reviewed": 0.3, "agreed": 2,
                               "agreement": pytest.approx(2 / 3), "unmatched_reviews": 1}


def test_apply_reviews_with_nothing_reviewed():
    out, stats = apply_reviews([{"id": "r0", "label": "a"}], {})
    assert out == [{"id": "r0", "label": "a"}]
    assert (stats.reviewed, stats.share_reviewed, stats.agreement) == (0, 0.0, None)
    _, empty = apply_reviews([], {})
    assert empty.share_reviewed == 0.0


def test_apply_reviews_from_the_store(store, queued, tmp_path):
    path = tmp_path / "reviewed.csv"
    _reviewed_csv(store, queued, path, {"LG-004": ("criminal", "ana", ""), "LG-011": ("contract", "bo", "")})
    import_reviews(store, queued, path, now=NOW)
    rows = [{**r, "label": p} for r, (p, _c) in zip(_records(), _predictions())]
    out, stats = apply_reviews(rows, load_reviews(store, domain="legal", interval=INTERVAL))
    assert {r["id"]: r["label"] for r in out}["LG-011"] == "contract"
    assert (stats.reviewed, stats.share_reviewed, stats.agreed, stats.agreement) == (2, 0.1, 1, 0.5)


def test_meta_key():
    assert meta_key("review/legal/x/queue-v1.jsonl") == "review/legal/x/queue-v1.meta.json"
