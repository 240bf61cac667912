"""Pure parts of pipelines.validate: reading suite files and condensing GX results (no GX needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipelines.validate import ValidationReport, load_suite, read_suite_file, suite_parameter_names
from pipelines.validate.report import distinct_values, format_value, summarize_failure

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "expectations" / "curated_batch.json"


def test_curated_suite_file_is_a_gx_suite_with_a_version_and_one_parameter() -> None:
    suite = load_suite(SUITE)

    assert suite["name"] == "curated_batch"
    assert suite["meta"]["version"]
    assert suite_parameter_names(suite) == frozenset({"domains"})
    assert read_suite_file(SUITE).sha256 == hashlib.sha256(SUITE.read_bytes()).hexdigest()
    columns = next(e for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_set")["kwargs"]
    assert columns["exact_match"] is True
    assert len(columns["column_set"]) == 21


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", r"must be a JSON object"),
        ('{"expectations": [{"type": "expect_x", "kwargs": {}}]}', r"needs a non-empty string 'name'"),
        ('{"name": "s", "expectations": []}', r"needs a non-empty list 'expectations'"),
        ('{"name": "s", "expectations": [{"kwargs": {}}]}', r"expectations\[0\] needs a 'type'"),
        ('{"name": "s", "expectations": [{"type": "expect_x"}]}', r"expectations\[0\] \(expect_x\) needs a 'kwargs'"),
        (
            '{"name": "s", "expectations": [{"expectation_type": "expect_x", "type": "expect_x", "kwargs": {}}]}',
            r"unknown keys \['expectation_type'\]",
        ),
        ('{"name": "s", "expectations": [{"type": "expect_x", "kwargs": {}}], "meta": 1}', r"'meta' must be an object"),
    ],
)
def test_malformed_suites_are_rejected_with_the_part_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "suite.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_suite(path)


def test_missing_suite_file_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'.*absent\.json' does not exist"):
        load_suite(tmp_path / "absent.json")


def test_summarize_failure_of_a_column_map_result() -> None:
    result = {
        "success": False,
        "expectation_config": {
            "type": "expect_column_values_to_be_unique",
            "kwargs": {"column": "id", "batch_id": "b"},
        },
        "result": {"unexpected_count": 4, "partial_unexpected_list": ["a", "b", "a", "b"]},
        "exception_info": {"raised_exception": False, "exception_message": None},
    }

    assert summarize_failure(result) == {
        "expectation": "expect_column_values_to_be_unique",
        "column": "id",
        "unexpected_count": 4,
        "unexpected_values": ("a", "b"),
        "observed": None,
        "error": None,
    }


def test_summarize_failure_of_an_errored_result_keeps_each_message_once() -> None:
    result = {
        "success": False,
        "expectation_config": {"type": "expect_column_values_to_be_between", "kwargs": {"column": "rating"}},
        "result": {},
        "exception_info": {
            "m1": {"raised_exception": True, "exception_message": "no column rating"},
            "m2": {"raised_exception": True, "exception_message": "no column rating"},
        },
    }

    summary = summarize_failure(result)
    assert summary["error"] == "no column rating"
    assert summary["unexpected_count"] is None


def test_values_are_short_strings() -> None:
    assert format_value(None) == "null"
    assert format_value(float("nan")) == "null"
    assert format_value(7.0) == "7"
    assert format_value(2.5) == "2.5"
    assert format_value("x" * 100) == "x" * 80 + "...(100 chars)"
    assert distinct_values([3.0, None, 3.0, "a", "b", "c", "d", "e"]) == ("3", "null", "a", "b", "c")


def test_report_refuses_to_contradict_itself() -> None:
    failed = (
        {
            "expectation": "e",
            "column": None,
            "unexpected_count": None,
            "unexpected_values": (),
            "observed": None,
            "error": None,
        },
    )
    common = {"suite_name": "s", "suite_version": "1", "suite_sha256": "0" * 64, "rows": 1, "seconds": 0.1}
    with pytest.raises(ValueError, match="contradicts"):
        ValidationReport(success=True, evaluated=1, failed=failed, **common)
    with pytest.raises(ValueError, match="inconsistent"):
        ValidationReport(success=False, evaluated=0, failed=failed, **common)

    report = ValidationReport(success=False, evaluated=2, failed=failed, **common)
    assert json.loads(json.dumps(report.to_dict()))["failed"][0]["unexpected_values"] == []
