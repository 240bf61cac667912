"""The curated-batch suite (expectations/curated_batch.json) run through validate_batch on tiny inline batches."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipelines.validate import ValidationReport, load_suite, validate_batch

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "expectations" / "curated_batch.json"
DOMAINS = {"domains": ["legal", "medical"]}

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("arrival_date", pa.string()),
        ("created_at", pa.string()),
        ("language", pa.string()),
        ("content_sha256", pa.string()),
        ("usage", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("rating", pa.int64()),
        ("correction", pa.string()),
        ("model_version", pa.string()),
        ("request_id", pa.string()),
        ("label_source", pa.string()),
        ("label_confidence", pa.float64()),
        ("sensitive_flags", pa.string()),
        ("subject_sha256", pa.string()),
    ]
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def valid_rows() -> list[dict[str, Any]]:
    """Three valid records: a file record, a rated feedback record and an unrated one."""
    common = {"source_uri": "s3://mlops-data/landing/legal/2024-06-03/a.jsonl", "arrival_date": "2024-06-03"}
    return [
        {**common, "id": "a1", "domain": "legal", "text": "The lease ends in May.", "label": "contract",
         "source": "files", "created_at": None, "language": "en", "content_sha256": sha("The lease ends in May."),
         "usage": "train", "question": None, "answer": None, "rating": None, "correction": None,
         "model_version": None, "request_id": None, "subject_sha256": sha("subject\x00legal\x00client-17")},
        {**common, "id": "a2", "domain": "medical", "text": "Q: dose? A: 5 mg", "label": None,
         "source": "feedback", "created_at": "2024-06-02T10:00:00Z", "language": "en",
         "content_sha256": sha("Q: dose? A: 5 mg"), "usage": "review", "question": "dose?", "answer": "5 mg",
         "rating": 2, "correction": "10 mg", "model_version": "clf-7", "request_id": "req-1"},
        {**common, "id": "a3", "domain": "legal", "text": "合同已终止", "label": None,
         "source": "feedback", "created_at": None, "language": "zh", "content_sha256": sha("合同已终止"),
         "usage": "hold", "question": "状态?", "answer": "终止", "rating": 5, "correction": None,
         "model_version": "clf-7", "request_id": "req-2"},
    ]


def table_of(rows: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def failed_types(report: ValidationReport) -> list[tuple[str, str | None]]:
    return [(entry["expectation"], entry["column"]) for entry in report.failed]


def test_valid_batch_passes_every_expectation() -> None:
    report = validate_batch(table=table_of(valid_rows()), suite_path=SUITE, parameters=DOMAINS)

    assert report.success is True
    assert report.failed == ()
    assert report.evaluated == len(load_suite(SUITE)["expectations"]) == 17
    assert report.rows == 3
    assert report.suite_name == "curated_batch"
    assert report.suite_version == "3"
    assert report.suite_sha256 == hashlib.sha256(SUITE.read_bytes()).hexdigest()
    assert report.seconds > 0
    assert json.loads(json.dumps(report.to_dict()))["success"] is True


def test_bad_rows_fail_exactly_the_expected_expectations() -> None:
    rows = valid_rows()
    rows[1]["id"] = "a1"  # duplicate id
    rows[0]["language"] = "fr"
    rows[2]["rating"] = 7
    rows[2]["content_sha256"] = rows[2]["content_sha256"].upper()
    rows[1]["subject_sha256"] = "patient-0042"  # a raw subject id must never be curated

    report = validate_batch(table=table_of(rows), suite_path=SUITE, parameters=DOMAINS)

    assert report.success is False
    assert report.evaluated == 17
    assert failed_types(report) == [  # in suite order
        ("expect_column_values_to_be_unique", "id"),
        ("expect_column_values_to_be_in_set", "language"),
        ("expect_column_values_to_match_regex", "content_sha256"),
        ("expect_column_values_to_be_between", "rating"),
        ("expect_column_values_to_match_regex", "subject_sha256"),
    ]
    details = {(e["column"]): (e["unexpected_count"], e["unexpected_values"], e["error"]) for e in report.failed}
    assert details == {
        "id": (2, ("a1",), None),
        "language": (1, ("fr",), None),
        "content_sha256": (1, (sha("合同已终止").upper(),), None),
        "subject_sha256": (1, ("patient-0042",), None),
        "rating": (1, ("7",), None),
    }


def test_domain_outside_the_run_parameter_fails() -> None:
    report = validate_batch(table=table_of(valid_rows()), suite_path=SUITE, parameters={"domains": ["legal"]})

    assert report.success is False
    assert failed_types(report) == [("expect_column_values_to_be_in_set", "domain")]
    assert report.failed[0]["unexpected_values"] == ("medical",)
    assert report.failed[0]["unexpected_count"] == 1


def test_same_suite_file_serves_another_domain_set() -> None:
    report = validate_batch(
        table=table_of(valid_rows()), suite_path=SUITE, parameters={"domains": ("medical", "legal", "finance")}
    )

    assert report.success is True


def test_null_and_empty_text_and_malformed_dates_fail() -> None:
    rows = valid_rows()
    rows[0]["text"] = ""
    rows[1]["text"] = None
    rows[2]["arrival_date"] = "2024-6-3"

    report = validate_batch(table=table_of(rows), suite_path=SUITE, parameters=DOMAINS)

    assert failed_types(report) == [
        ("expect_column_values_to_not_be_null", "text"),
        ("expect_column_value_lengths_to_be_between", "text"),
        ("expect_column_values_to_match_regex", "arrival_date"),
    ]
    assert [e["unexpected_values"] for e in report.failed] == [("null",), ("",), ("2024-6-3",)]


def test_wrong_columns_fail_the_column_set_and_checks_on_missing_columns_report_errors() -> None:
    kept = [field for field in SCHEMA if field.name not in ("rating", "request_id")]
    schema = pa.schema([*kept, ("extra", pa.string())])
    rows = [{**row, "extra": "x"} for row in valid_rows()]

    report = validate_batch(table=table_of(rows, schema), suite_path=SUITE, parameters=DOMAINS)

    assert failed_types(report) == [
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_be_between", "rating"),
    ]
    columns, rating = report.failed
    assert columns["observed"] == "unexpected: extra; missing: rating, request_id"
    assert columns["error"] is None
    assert rating["error"] is not None and "rating" in rating["error"]


def test_empty_batch_fails_the_row_count() -> None:
    report = validate_batch(table=SCHEMA.empty_table(), suite_path=SUITE, parameters=DOMAINS)

    assert report.rows == 0
    assert failed_types(report) == [("expect_table_row_count_to_be_between", None)]
    assert report.failed[0]["observed"] == "0"


def test_missing_suite_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"does not exist: check validation\.suite in config/pipeline\.yaml"):
        validate_batch(table=table_of(valid_rows()), suite_path=tmp_path / "nope.json", parameters=DOMAINS)


def test_invalid_json_suite_says_what_to_do(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "expectations": [')
    with pytest.raises(ValueError, match=r"is not valid UTF-8 JSON .*python -m json\.tool"):
        validate_batch(table=table_of(valid_rows()), suite_path=broken, parameters=DOMAINS)


def test_unknown_expectation_type_is_rejected_not_dropped(tmp_path: Path) -> None:
    suite = load_suite(SUITE)
    suite["expectations"].append({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "id"}})
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ValueError, match=r"expectations\[17\] \(expect_column_values_to_be_purple\) is not a valid GX"):
        validate_batch(table=table_of(valid_rows()), suite_path=path, parameters=DOMAINS)


def test_missing_suite_parameter_says_which() -> None:
    with pytest.raises(ValueError, match=r"suite parameter\(s\) \['domains'\].*parameters=\{'domains': \[\.\.\.\]\}"):
        validate_batch(table=table_of(valid_rows()), suite_path=SUITE, parameters={"domain": ["legal"]})


def test_table_must_be_arrow() -> None:
    with pytest.raises(TypeError, match="pyarrow.Table"):
        validate_batch(table=valid_rows(), suite_path=SUITE, parameters=DOMAINS)  # type: ignore[arg-type]


def test_importing_the_package_does_not_import_great_expectations() -> None:
    code = (
        "import sys, pipelines.validate\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_runs_leave_no_pandas_frame_alive() -> None:
    """GX's objects hold each run's frame in reference cycles; validate_batch collects them before it returns.

    With the automatic collector off, a frame left in a cycle would stay alive after the call: one per
    chunk in the weekly validate step, which is how its RSS grew with the partition.
    """
    import gc

    import pandas as pd

    def live_frames() -> int:
        return sum(isinstance(obj, pd.DataFrame) for obj in gc.get_objects())

    gc.collect()
    before = live_frames()
    gc.disable()
    try:
        for _ in range(3):
            assert validate_batch(table=table_of(valid_rows()), suite_path=SUITE, parameters=DOMAINS).success
            assert live_frames() == before
    finally:
        gc.enable()
