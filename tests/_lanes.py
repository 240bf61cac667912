"""Which lane a test runs in (pytest.ini registers the markers; scripts/test.sh runs the lanes one by one)."""

from __future__ import annotations

from pathlib import Path

LANES = ("unit", "s3", "airflow", "e2e", "gpu")


def lanes_of(relpath: str, fixturenames: set[str] | list[str], own_marks: set[str]) -> set[str]:
    """The lane markers of a test from where it lives and what it uses; ``unit`` when nothing else applies."""
    parts = Path(relpath).parts
    lanes = set(own_marks) & set(LANES)
    if "e2e" in parts:
        lanes.add("e2e")
    if "dags" in parts or "airflow_db" in fixturenames:
        lanes.add("airflow")
    if {"s3_server", "s3_bucket"} & set(fixturenames):
        lanes.add("s3")
    return lanes or {"unit"}
