"""Fixtures of tests/deploy."""

from __future__ import annotations

import pytest
from deploy_helpers import ROOT, SERVICES, airflow_env, deployment_airflow_options, of_kind, run_airflow_probe


@pytest.fixture(scope="session")
def airflow_probe(tmp_path_factory) -> dict:
    """One Airflow process, in the compose workers' environment, checking every Airflow argv of the compose
    file, every Airflow option of the deployment files and the celery healthcheck (see deploy_helpers)."""
    env = airflow_env(tmp_path_factory.mktemp("airflow-home"))
    worker_env = SERVICES["airflow-worker"]["environment"]
    env.update({k: str(v) for k, v in worker_env.items() if k.startswith("AIRFLOW__CELERY")})
    # the image's /opt/app is this checkout
    env["AIRFLOW_CONFIG"] = worker_env["AIRFLOW_CONFIG"].replace("/opt/app/", f"{ROOT}/")
    argvs = [[a.replace("${HOSTNAME}", "worker-1") for a in argv[1:]] for argv in of_kind("airflow")]
    report = run_airflow_probe(env=env, argvs=argvs, options=deployment_airflow_options(),
                               celery_argv=of_kind("celery-ping")[0])
    report["argvs"] = argvs
    return report
