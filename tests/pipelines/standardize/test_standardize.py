"""standardize_record on tiny inline raw records: the curated dict, the failing schema rule, feedback usage."""

from __future__ import annotations

import re

import pytest

from pipelines.ingest.parse import Rejection
from pipelines.standardize import RawRecord, detect_language, standardize_record, standardize_records, to_row

KEY = "landing/legal/2024-06-03/a.jsonl"
FEEDBACK = {"request_id": "r1", "domain": "legal", "model_version": "m1", "question": "Is this binding?",
            "answer": "Yes, once signed.", "rating": 4}


def files(raw: dict, line: int = 1) -> RawRecord:
    return RawRecord(arrival_date="2024-06-03", key=KEY, line=line, source="files", kind="files", raw=raw)


def feedback(**changes) -> RawRecord:
    raw = {**FEEDBACK, **changes}
    raw = {k: v for k, v in raw.items() if v is not ...}
    return RawRecord(arrival_date="2024-06-03", key="landing/feedback/2024-06-03/f.jsonl", line=3,
                     source="feedback", kind="feedback", raw=raw)


def rule(result) -> str:
    assert isinstance(result, Rejection), result
    assert result.stage == "standardize"
    return result.reason


def test_valid_files_record_maps_to_exact_curated_dict():
    record = standardize_record(files({"text": "The lease ends in May.", "label": "contract"}), domain="legal")
    assert record == {
        "id": "legal-725783f41a2cb4d8a1e8", "domain": "legal", "text": "The lease ends in May.",
        "label": "contract", "source": "files", "source_uri": f"{KEY}#L1", "arrival_date": "2024-06-03",
        "created_at": None, "language": "en", "usage": "train",
    }


def test_subject_id_is_curated_only_as_its_domain_hash():
    from pipelines.privacy import hash_subject

    record = standardize_record(files({"text": "Chest pain at rest.", "subject_id": "patient-0042"}), domain="medical")
    assert record["subject_sha256"] == hash_subject("patient-0042", domain="medical").hex()
    assert "patient-0042" not in repr(record)
    # The same person in another domain is another subject (no cross-domain linkage through the hash).
    other = standardize_record(files({"text": "Chest pain at rest.", "subject_id": "patient-0042"}), domain="legal")
    assert other["subject_sha256"] != record["subject_sha256"]
    # Without the field the curated column is null.
    assert to_row(standardize_record(files({"text": "No subject."}), domain="medical"))["subject_sha256"] is None
    for bad in ("", "  ", 42):
        rejected = standardize_record(files({"text": "x", "subject_id": bad}), domain="medical")
        assert rule(rejected) == "schema.subject_id.type" and "subject_id" not in rejected.raw


def test_derived_id_is_domain_and_20_hex_stable_per_uri():
    first = standardize_record(files({"text": "a"}), domain="legal")["id"]
    again = standardize_record(files({"text": "different text, same uri"}), domain="legal")["id"]
    other_line = standardize_record(files({"text": "a"}, line=2), domain="legal")["id"]
    assert re.fullmatch(r"legal-[0-9a-f]{20}", first)
    assert first == again
    assert other_line != first
    assert re.fullmatch(r"legal-[0-9a-f]{20}", other_line)


def test_given_id_language_created_at_and_qa_are_kept():
    raw = {"text": "合同已终止", "id": "doc-7", "language": "zh", "created_at": "2024-06-01T08:00:00Z",
           "question": "q", "answer": "a"}
    record = standardize_record(files(raw), domain="legal")
    assert record["id"] == "doc-7"
    assert record["language"] == "zh"
    assert record["created_at"] == "2024-06-01T08:00:00Z"
    assert (record["question"], record["answer"]) == ("q", "a")


@pytest.mark.parametrize(("raw", "expected"), [
    ({"text": "x", "label": 5}, "schema.label.type"),
    ({"text": ""}, "schema.text.minLength"),
    ({"text": " \t\n\u3000"}, "schema.text.pattern"),
    ({"text": "x", "created_at": "last Tuesday"}, "schema.created_at.format"),
    ({"text": "x", "colour": "red"}, "schema.record.additionalProperties"),
    ({"text": None}, "schema.text.type"),
])
def test_invalid_files_record_is_rejected_with_the_failing_rule(raw, expected):
    result = standardize_record(files(raw), domain="legal")
    assert rule(result) == expected
    assert result.source_uri == f"{KEY}#L1"


def test_unknown_field_rejection_names_the_field():
    result = standardize_record(files({"text": "x", "colour": "red"}), domain="legal")
    assert result.detail == "unknown field(s) ['colour']"
    assert result.raw == '{"text": "x", "colour": "red"}'


@pytest.mark.parametrize(("changes", "usage"), [
    ({"rating": 5}, "train"),
    ({"rating": 4}, "train"),
    ({"rating": 3}, "hold"),
    ({"rating": 2}, "review"),
    ({"rating": 1}, "review"),
    ({"rating": 5, "correction": "Only once both parties sign."}, "review"),
])
def test_feedback_usage_follows_rating_and_correction(changes, usage):
    assert standardize_record(feedback(**changes), domain="legal")["usage"] == usage


def test_feedback_record_maps_to_exact_curated_dict():
    record = standardize_record(feedback(), domain="legal")
    assert record == {
        "id": "fb-r1", "domain": "legal", "text": "Is this binding?\nYes, once signed.", "label": None,
        "source": "feedback", "source_uri": "landing/feedback/2024-06-03/f.jsonl#L3", "arrival_date": "2024-06-03",
        "created_at": None, "language": "en", "usage": "train", "question": "Is this binding?",
        "answer": "Yes, once signed.", "rating": 4, "correction": None, "model_version": "m1", "request_id": "r1",
    }


def test_feedback_thresholds_come_from_arguments():
    item = feedback(rating=3)
    assert standardize_record(item, domain="legal", train_min_rating=3, review_max_rating=1)["usage"] == "train"
    assert standardize_record(item, domain="legal", train_min_rating=5, review_max_rating=3)["usage"] == "review"


def test_feedback_csv_rating_string_is_coerced():
    record = standardize_record(feedback(rating="4"), domain="legal")
    assert record["rating"] == 4
    assert record["usage"] == "train"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"rating": 7}, "schema.rating.maximum"),
    ({"rating": 0}, "schema.rating.minimum"),
    ({"rating": "four"}, "schema.rating.type"),
    ({"answer": ...}, "schema.record.required"),
    ({"answer": ""}, "schema.answer.minLength"),
    ({"created_at": "yesterday"}, "schema.created_at.format"),
    ({"label": "x"}, "schema.record.additionalProperties"),
])
def test_invalid_feedback_is_rejected_with_the_failing_rule(changes, expected):
    assert rule(standardize_record(feedback(**changes), domain="legal")) == expected


def test_missing_answer_message_names_the_field():
    assert standardize_record(feedback(answer=...), domain="legal").detail == "data must contain ['answer'] properties"


def test_standardize_records_keeps_order_and_mixes_records_and_rejections():
    out = list(standardize_records([files({"text": "a"}, 1), files({"text": ""}, 2), files({"text": "b"}, 3)],
                                   domain="legal"))
    assert [r["text"] if isinstance(r, dict) else r.reason for r in out] == ["a", "schema.text.minLength", "b"]


@pytest.mark.parametrize(("text", "language"), [
    ("合同已终止", "zh"),
    ("本合同 under PRC law 有效", "zh"),
    ("The lease ends in May.", "en"),
    ("12345 67890", "other"),
    ("", "other"),
    ("Привет мир", "other"),
])
def test_detect_language(text, language):
    assert detect_language(text) == language
