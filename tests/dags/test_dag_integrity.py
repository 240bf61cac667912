"""DAG integrity: every DAG file imports cleanly, is documented and retried, and parses light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ("torch", "transformers", "opacus", "great_expectations", "pandas", "boto3", "botocore", "pyarrow", "numpy")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(DAG_FILES)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_one_dag_per_file_named_after_it(dagbag, path):
    ids = [d.dag_id for d in dagbag.dags.values() if Path(d.fileloc).name == path.name]
    assert ids == [path.stem]


def test_dags_are_owned_tagged_documented_and_retried(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag.dag_id
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), (dag.dag_id, task.task_id)
            assert task.retries >= 2, (dag.dag_id, task.task_id, task.retries)
            assert task.on_failure_callback, (dag.dag_id, task.task_id)


def test_weekly_ingest_runs_cover_sunday_to_sunday(dagbag):
    """Each run's data interval is one week [Sunday, next Sunday); the next run takes the following week."""
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = dagbag.dags["weekly_ingest"].timetable
    week = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 10, 14, 12, tz="UTC"))
    assert (week.start, week.end) == (pendulum.datetime(2026, 10, 4, tz="UTC"), pendulum.datetime(2026, 10, 11, tz="UTC"))
    following = timetable.next_dagrun_info(last_automated_data_interval=DataInterval(week.start, week.end),
                                           restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    assert (following.data_interval.start, following.data_interval.end) == (week.end, pendulum.datetime(2026, 10, 18, tz="UTC"))
    assert following.run_after == following.data_interval.end  # a week is processed once it is complete


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_module(path, tmp_path):
    """Parse the file in a fresh interpreter and look at sys.modules (not the clock)."""
    code = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(path)!r})\n"
        f"print(json.dumps({{'errors': {{k: str(v) for k, v in bag.import_errors.items()}}, "
        f"'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"errors": {}, "heavy": []}
