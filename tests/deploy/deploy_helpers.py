"""Shared by tests/deploy: the compose file as argvs, their kinds, and one Airflow process that checks
every Airflow command and option of the deployment files (Airflow imports cost ~2 s per process)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
HELM_VALUES = ROOT / "deploy" / "helm" / "airflow-values.yaml"
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict = COMPOSE["services"]


def argv_of(value: object) -> list[str]:
    """A compose command / healthcheck test as an argv (compose's `$$` escape undone)."""
    if isinstance(value, str):
        return shlex.split(value.replace("$$", "$"))
    items = [str(v).replace("$$", "$") for v in value]
    if items and items[0] == "CMD-SHELL":
        return shlex.split(" ".join(items[1:]))
    return items[1:] if items and items[0] == "CMD" else items


def all_argvs() -> list[tuple[str, str, list[str]]]:
    """(service, "entrypoint" | "command" | "healthcheck", argv) for everything the compose file runs."""
    out = []
    for name, svc in SERVICES.items():
        if "entrypoint" in svc:
            out.append((name, "entrypoint", argv_of(svc["entrypoint"])))
        if "command" in svc:
            argv = argv_of(svc["command"])
            if svc.get("image", "").startswith("chrislusf/seaweedfs:"):
                argv = ["weed", *argv]  # the image's entrypoint execs `weed "$@"` for `mini`
            out.append((name, "command", argv))
        if "healthcheck" in svc:
            out.append((name, "healthcheck", argv_of(svc["healthcheck"]["test"])))
    return out


def classify(argv: list[str]) -> str | None:
    """The kind of a command, i.e. which test of test_compose.py exercises it; None when unknown."""
    if argv[:1] == ["airflow"]:
        return "airflow"
    if argv[:3] == ["celery", "--app", CELERY_APP] and argv[3:5] == ["inspect", "ping"]:
        return "celery-ping"
    if argv[:5] == ["python", "-m", "pipelines", "serve", "run"]:
        return "pipelines-serve"
    if argv == ["python", "deploy/bucket_init.py"]:
        return "bucket-init"
    if argv == ["python", "-m", "pipelines.identities", "--out", "/identities"]:
        return "s3-identities"
    if argv[:1] == ["curl"] and set(argv[1:-1]) <= {"--fail", "--silent", "--max-time", "5"}:
        return "http-probe"
    if argv[:4] == ["wget", "-q", "-O", "/dev/null"] and len(argv) == 5:
        return "http-probe"
    if argv[:1] == ["pg_isready"]:
        return "pg_isready"
    if argv == ["redis-cli", "ping"]:
        return "redis-cli"
    if argv[:2] == ["weed", "mini"]:
        return "weed-mini"
    return None


def of_kind(kind: str) -> list[list[str]]:
    """The compose file's argvs of one kind (at least one)."""
    found = [argv for _, _, argv in all_argvs() if classify(argv) == kind]
    assert found, f"no command of kind {kind!r} in docker-compose.yaml"
    return found


def airflow_env(home: Path) -> dict[str, str]:
    """Environment for an Airflow process on a throwaway home (CeleryExecutor: the celery CLI exists only then)."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def deployment_airflow_options() -> list[list[str]]:
    """[section, option] of every Airflow setting in the compose file, the env example and the Helm values."""
    options = set()
    keys = [k for svc in SERVICES.values() for k in svc.get("environment", {})]
    keys += [line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line]
    for key in keys:
        if key.startswith("AIRFLOW__"):
            section, option = key[len("AIRFLOW__"):].lower().split("__")
            options.add((section, option))
    helm = yaml.safe_load(HELM_VALUES.read_text())
    options |= {(section, key) for section, block in helm["config"].items() for key in block}
    return sorted(list(o) for o in options)


AIRFLOW_PROBE = r"""
import importlib, json, sys
from airflow.cli import cli_parser
from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager

argvs, options, celery_argv = json.loads(sys.stdin.read())
parser = cli_parser.get_parser()
bad = []
for argv in argvs:
    try:
        parser.parse_args(argv)
    except SystemExit:
        bad.append(argv)
ProvidersManager().initialize_providers_configuration()
known = conf.configuration_description
unknown = [o for o in options if o[1] not in known.get(o[0], {}).get("options", {})]

# the celery healthcheck: its --app loads, and `inspect` takes what the argv passes
from celery.bin.celery import celery
from celery.worker.control import Panel
module, attr = celery_argv[2].rsplit(".", 1)
app = getattr(importlib.import_module(module), attr)
inspect = celery.commands[celery_argv[3]]
opts = {o for p in inspect.params for o in p.opts}
print(json.dumps({
    "bad_argvs": bad,
    "unknown_options": unknown,
    "checked_options": options,
    "celery_ping_known": celery_argv[4] in Panel.data and all(a in opts for a in celery_argv[5::2]),
    "visibility_timeout": app.conf.broker_transport_options.get("visibility_timeout"),
}))
"""


def run_airflow_probe(*, env: dict[str, str], argvs: list[list[str]], options: list[list[str]],
                      celery_argv: list[str]) -> dict:
    """Run AIRFLOW_PROBE in a fresh interpreter; returns its report."""
    result = subprocess.run([str(VENV_BIN / "python"), "-c", AIRFLOW_PROBE],
                            input=json.dumps([argvs, options, celery_argv]),
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
