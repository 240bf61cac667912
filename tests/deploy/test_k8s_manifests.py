"""deploy/k8s: every object validates against the Kubernetes OpenAPI schemas shipped offline with
kubernetes-validate (strict: unknown fields are errors), and the objects agree with each other
(probes, quota arithmetic, secret references, GPU pod override)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest release still in upstream support when this was written; kubernetes-validate 1.37 ships its schemas.
K8S_VERSION = "1.33.0"
FILES = ("namespace.yaml", "serving.yaml", "pod_override_gpu.yaml")


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _by_kind(name: str) -> dict[str, dict]:
    return {d["kind"]: d for d in _docs(name)}


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if str(value).endswith("m") else float(value)


def _bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(value))
    return int(match.group(1)) * units.get(match.group(2), 1)


def test_k8s_schemas_for_the_chosen_version_are_installed():
    assert "1.33.0" in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("name", FILES)
def test_manifests_validate_against_the_kubernetes_schema(name):
    kinds = []
    for doc in _docs(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert kinds == {
        "namespace.yaml": ["Namespace", "ResourceQuota", "LimitRange"],
        "serving.yaml": ["ServiceAccount", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"],
        "pod_override_gpu.yaml": ["Pod"],
    }[name]


def test_the_validator_rejects_mistakes():
    deployment = _by_kind("serving.yaml")["Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecond"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_serving_probes_resources_and_secret_references():
    objects = _by_kind("serving.yaml")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "pipelines", "serve", "run", "--host", "0.0.0.0", "--port", "8080"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["livenessProbe"]["periodSeconds"] == container["readinessProbe"]["periodSeconds"] == 30
    assert container["ports"] == [{"name": "https", "containerPort": 8080, "protocol": "TCP"}]
    # TLS on: the certificate and key come from the mounted kubernetes.io/tls secret serving-tls
    values = {e["name"]: e.get("value") for e in container["env"]}
    assert (values["PIPELINE__SERVING__TLS_CERT"], values["PIPELINE__SERVING__TLS_KEY"]) == (
        "/opt/app/tls/tls.crt", "/opt/app/tls/tls.key")
    assert {"name": "tls", "mountPath": "/opt/app/tls", "readOnly": True} in container["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "serving-tls", "defaultMode": 0o400}} in pod["volumes"]
    assert set(container["resources"]) == {"requests", "limits"}
    # secrets only by reference: no Secret object, no literal value for a secret-looking variable
    assert all(d["kind"] != "Secret" for f in FILES for d in _docs(f))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"PIPELINE_SERVING_TOKENS": {"name": "serving-tokens", "key": "tokens"}}
    # serving acts as its own least-privilege S3 identity: only its credentials folder is mounted, no admin key
    assert (values["PIPELINE_S3_IDENTITY"], values["PIPELINE_S3_IDENTITIES_DIR"]) == ("serving", "/run/s3-identities")
    assert {"name": "s3-identity", "mountPath": "/run/s3-identities/serving", "readOnly": True} in container["volumeMounts"]
    assert {"name": "s3-identity", "secret": {"secretName": "s3-identity-serving", "defaultMode": 0o400}} in pod["volumes"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(values)
    service = objects["Service"]["spec"]
    assert service["selector"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == "https"


def test_hpa_targets_the_deployment_at_70_percent_cpu():
    objects = _by_kind("serving.yaml")
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "serving"}
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_quota_admits_the_hpa_maximum_during_a_rolling_update_and_limitrange_admits_the_pod():
    ns = _by_kind("namespace.yaml")
    serving = _by_kind("serving.yaml")
    namespace = ns["Namespace"]["metadata"]["name"]
    assert {d["metadata"]["namespace"] for f in ("namespace.yaml", "serving.yaml") for d in _docs(f)
            if d["kind"] != "Namespace"} == {namespace}
    deployment = serving["Deployment"]["spec"]
    pods = serving["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] + deployment["strategy"]["rollingUpdate"]["maxSurge"]
    [container] = deployment["template"]["spec"]["containers"]
    res = container["resources"]
    hard = ns["ResourceQuota"]["spec"]["hard"]
    assert pods <= int(hard["pods"])
    assert pods * _cpu(res["requests"]["cpu"]) <= _cpu(hard["requests.cpu"])
    assert pods * _cpu(res["limits"]["cpu"]) <= _cpu(hard["limits.cpu"])
    assert pods * _bytes(res["requests"]["memory"]) <= _bytes(hard["requests.memory"])
    assert pods * _bytes(res["limits"]["memory"]) <= _bytes(hard["limits.memory"])
    [limits] = ns["LimitRange"]["spec"]["limits"]
    assert limits["type"] == "Container"
    for kind in ("requests", "limits"):
        assert _cpu(limits["min"]["cpu"]) <= _cpu(res[kind]["cpu"]) <= _cpu(limits["max"]["cpu"])
        assert _bytes(limits["min"]["memory"]) <= _bytes(res[kind]["memory"]) <= _bytes(limits["max"]["memory"])


def test_gpu_pod_override_requests_one_gpu_on_a_tolerated_gpu_node():
    pod = _by_kind("pod_override_gpu.yaml")["Pod"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "base"  # Airflow merges pod_override into the container named "base"
    assert "image" not in container and "command" not in container  # the executor sets them
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
