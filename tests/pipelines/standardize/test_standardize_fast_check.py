"""The files-record fast check: on for this schema, and never accepts what the schema validator rejects."""

from __future__ import annotations

import itertools
import logging

import pytest

import pipelines.standardize as standardize
from pipelines.ingest.parse import Rejection
from pipelines.standardize import RawRecord, _files_record_is_valid, schema_error, standardize_record

VALID = {
    "id": "doc-7", "domain": "legal", "text": "The lease ends in May.", "label": "contract", "source": "files",
    "source_uri": "landing/legal/2024-06-03/a.jsonl#L1", "arrival_date": "2024-06-03",
    "created_at": "2024-06-01T08:00:00Z", "language": "en", "usage": "train",
}
# Values at and across each rule's edge (some valid, some not).
EDGES = {
    "id": ["a", "x" * 128, "x" * 129, "", "-bad", "ok\n", "a b", "abc\u0661", 7, None],
    "domain": ["a" * 63, "a" * 64, "Legal", "legal\n", "", None],
    "text": ["x", "\u3000a", "", " \t\n\u3000", "x" * 100_000, "x" * 100_001, None, ["t"]],
    "label": [None, "x" * 128, "x" * 129, "", 5, True],
    "source": ["f" * 63, "Files", "files\n"],
    "source_uri": ["k#L1", "", 5],
    "arrival_date": ["2000-02-29", "1900-02-29", "2024-02-30", "2024-06-03\n", "2024-06-0\u0663", None],
    "created_at": [None, "2024-06-01t08:00:00z", "2024-06-01T08:00:60+08:00", "2024-06-01T08:00:00.5+0800",
                   "2024-06-01T24:00:00Z", "2024-06-01T08:00:00", "2024-06-01T08:00:00Z\n", "", 5],
    "language": ["zh", "other", "fr", "EN", ["en"], None],
    "usage": ["review", "x"],
    "question": [None, "", "x" * 100_000, "x" * 100_001, 5],
    "answer": [None, "a", "x" * 100_001, ["a"]],
    "rating": [3],
    "subject_sha256": ["a" * 64, "0123456789abcdef" * 4, "A" * 64, "a" * 63, "g" * 64, "a" * 64 + "\n", None, 5],
}


def test_fast_check_is_on_for_the_current_schema():
    # Fails when the schema file changes: review _files_record_is_valid against it, then update the digest.
    assert standardize._fast_checks() is not None
    assert _files_record_is_valid(dict(VALID))


@pytest.mark.parametrize("field", sorted(EDGES))
def test_fast_check_never_accepts_what_the_validator_rejects(field):
    for value in EDGES[field]:
        record = dict(VALID, **{field: value})
        if field in ("question", "answer"):
            record.setdefault("question", None)
            record.setdefault("answer", None)
        if _files_record_is_valid(record):
            assert schema_error(record) is None, (field, value)


def test_fast_check_pairs_of_edges():
    fields = ["id", "text", "created_at", "arrival_date"]
    for a, b in itertools.combinations(fields, 2):
        for va, vb in itertools.product(EDGES[a], EDGES[b]):
            record = dict(VALID, **{a: va, b: vb})
            if _files_record_is_valid(record):
                assert schema_error(record) is None, (a, va, b, vb)


def test_invalid_records_still_get_the_validator_rule():
    item = RawRecord(arrival_date="2024-06-03", key="k", line=1, source="files", kind="files",
                     raw={"text": "x", "created_at": "2024-06-01T24:00:00Z"})
    result = standardize_record(item, domain="legal")
    assert isinstance(result, Rejection) and result.reason == "schema.created_at.format"


def test_changed_schema_turns_the_fast_check_off(monkeypatch, caplog):
    standardize._fast_checks.cache_clear()
    monkeypatch.setattr(standardize, "_FAST_CHECK_SCHEMA_SHA256", "0" * 64)
    try:
        with caplog.at_level(logging.WARNING, logger="pipelines.standardize"):
            assert not _files_record_is_valid(dict(VALID))
        assert "fast check is off" in caplog.text
        item = RawRecord(arrival_date="2024-06-03", key="k", line=1, source="files", kind="files", raw={"text": "ok"})
        assert isinstance(standardize_record(item, domain="legal"), dict)  # the validator still decides
    finally:
        standardize._fast_checks.cache_clear()
