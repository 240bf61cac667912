"""The test lanes tests/conftest.py gives each test (pytest.ini registers them; scripts/test.sh times each)."""

from __future__ import annotations

import pytest

from _lanes import lanes_of


@pytest.mark.parametrize(("path", "fixtures", "own", "lanes"), [
    ("pipelines/dedup/test_index.py", ["tmp_path"], set(), {"unit"}),
    ("pipelines/test_ops.py", ["s3_bucket", "tmp_path"], set(), {"s3"}),
    ("deploy/test_compose.py", ["s3_server"], set(), {"s3"}),
    ("dags/test_dag_integrity.py", ["dagbag"], set(), {"airflow"}),
    ("e2e/test_runbook.py", ["airflow_db"], set(), {"e2e", "airflow"}),
    ("e2e/test_weekly_ingest_dag.py", ["airflow_db", "s3_bucket"], set(), {"e2e", "airflow", "s3"}),
    ("pipelines/train/test_ddp.py", [], {"gpu", "slow"}, {"gpu"}),
    ("deploy/test_compose.py", [], {"airflow"}, {"airflow"}),
])
def test_lanes_from_directory_fixtures_and_own_marks(path, fixtures, own, lanes):
    assert lanes_of(path, fixtures, own) == lanes


def test_this_plain_test_was_put_in_the_unit_lane_only(request):
    lanes = {"unit", "s3", "airflow", "e2e", "gpu"}
    assert {m.name for m in request.node.iter_markers()} & lanes == {"unit"}
