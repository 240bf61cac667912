"""deploy/helm/airflow-values.yaml for Airflow's official chart.

The chart's values.schema.json is not available offline here, so this checks the structure the values
rely on (executor, KEDA on the Celery workers, the `gpu` worker set, secrets by reference) and that every
Airflow option under `config:` exists in the installed Airflow and providers."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "airflow-values.yaml").read_text())
K8S_VERSION = "1.33.0"


def test_celery_executor_with_keda_workers():
    assert VALUES["executor"] == "CeleryExecutor"
    celery = VALUES["workers"]["celery"]
    assert celery["enableDefault"] is True and celery["queue"] == "default"
    assert celery["keda"]["enabled"] is True
    assert celery["keda"]["minReplicaCount"] <= celery["keda"]["maxReplicaCount"]
    assert celery["persistence"]["enabled"] is False  # KEDA scales Deployments, not StatefulSets with PVCs
    assert VALUES["config"]["operators"]["default_queue"] == celery["queue"]


def test_gpu_worker_set_requests_a_gpu_on_tolerated_gpu_nodes():
    [gpu] = VALUES["workers"]["celery"]["sets"]
    assert (gpu["name"], gpu["queue"]) == ("gpu", "gpu")
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu["keda"]["enabled"] is True and gpu["keda"]["minReplicaCount"] == 0
    # the same shapes as Kubernetes objects: a pod spec built from them validates
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-worker"},
           "spec": {"nodeSelector": gpu["nodeSelector"], "tolerations": gpu["tolerations"],
                    "containers": [{"name": "worker", "image": "x", "resources": gpu["resources"]}]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_visibility_timeout_matches_compose_and_secrets_are_references():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    worker_env = compose["services"]["airflow-worker"]["environment"]
    assert VALUES["config"]["celery_broker_transport_options"]["visibility_timeout"] == int(
        worker_env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
    assert VALUES["config"]["celery"]["worker_concurrency"] == int(worker_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert isinstance(VALUES[key], str) and VALUES[key]
    assert VALUES["data"] == {"metadataSecretName": "airflow-metadata"}
    assert "fernetKey" not in VALUES and "webserverSecretKey" not in VALUES
    assert "extraEnvFrom" not in VALUES  # no admin object-store key reaches Airflow
    assert {e["name"] for e in VALUES["env"]}.isdisjoint({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


def _identities(pod_values: dict) -> list[str]:
    """The S3 identities a pod mounts, checking each secret volume is mounted read-only where storage looks."""
    mounts = {m["name"]: m for m in pod_values["extraVolumeMounts"]}
    names = []
    for volume in pod_values["extraVolumes"]:
        component = volume["secret"]["secretName"].removeprefix("s3-identity-")
        assert volume["secret"]["defaultMode"] == 0o400
        assert mounts[volume["name"]] == {"name": volume["name"], "mountPath": f"/run/s3-identities/{component}",
                                          "readOnly": True}
        names.append(component)
    return names


def test_each_airflow_pod_mounts_only_the_s3_identities_its_tasks_use():
    env = {e["name"]: e.get("value") for e in VALUES["env"]}
    assert env["PIPELINE_S3_IDENTITIES_DIR"] == "/run/s3-identities"
    assert _identities(VALUES["workers"]["celery"]) == ["ingestion", "training"]
    [gpu] = [s for s in VALUES["workers"]["celery"]["sets"] if s["name"] == "gpu"]
    assert _identities(gpu) == ["training"]
    assert _identities(VALUES["apiServer"]) == ["console"]
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    mounted = {name: sorted(v.split(":")[0].removeprefix("s3-identity-") for v in svc.get("volumes", [])
                            if v.startswith("s3-identity-") and ":/run/" in v)
               for name, svc in compose.items()}
    assert {k: v for k, v in mounted.items() if v} == {
        "airflow-apiserver": ["console"], "airflow-worker": ["ingestion", "training"],
        "airflow-worker-gpu": ["training"], "serving": ["serving"]}


def test_every_config_option_exists_in_airflow(airflow_probe):
    """The options under `config:` are checked by the same Airflow process as the compose file's."""
    options = sorted([section, key] for section, block in VALUES["config"].items() for key in block)
    assert len(options) == 7
    checked = {tuple(o) for o in airflow_probe["checked_options"]}
    assert {tuple(o) for o in options} <= checked
    assert airflow_probe["unknown_options"] == []
