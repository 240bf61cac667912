"""Dockerfile and .dockerignore: no Docker engine here, so the checks are on the text, and the one shell
command that rewrites requirements.txt runs for real."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.splitlines() if not l.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def test_base_image_user_and_copied_folders():
    steps = _instructions()
    assert [a for i, a in steps if i == "FROM"] == ["python:3.11-slim-bookworm"]
    assert [a for i, a in steps if i == "USER"] == ["${AIRFLOW_UID}:0"]
    copied = [a.split()[0] for i, a in steps if i == "COPY"]
    assert copied == ["requirements.txt", "pipelines", "dags", "plugins", "config", "expectations", "scripts", "deploy"]
    for folder in copied:
        assert (ROOT / folder).exists(), folder
    assert ("ARG", "TORCH_VARIANT=cpu") in steps


def _torch_rewrite(variant: str) -> str:
    """Runs the Dockerfile's own sed command on requirements.txt."""
    [run] = [a for i, a in _instructions() if i == "RUN" and "sed -E" in a]
    expression = re.search(r'sed -E "([^"]+)"', run).group(1).replace("${TORCH_VARIANT}", variant)
    assert "pip install --extra-index-url \"${TORCH_INDEX_URL}/${TORCH_VARIANT}\" -r /tmp/requirements.txt" in run
    return subprocess.run(["sed", "-E", expression, str(ROOT / "requirements.txt")], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_torch_variant_rewrites_only_the_torch_pin():
    original = (ROOT / "requirements.txt").read_text().splitlines()
    [torch_pin] = [l for l in original if l.startswith("torch==")]
    assert torch_pin.endswith("+cpu")
    assert _torch_rewrite("cpu").splitlines() == original
    gpu = _torch_rewrite("cu128").splitlines()
    changed = [(a, b) for a, b in zip(original, gpu) if a != b]
    assert changed == [(torch_pin, torch_pin.replace("+cpu", "+cu128"))]
    assert len(gpu) == len(original)


def test_dockerignore_keeps_state_and_secrets_out_of_the_context():
    ignored = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    assert {".git", ".venv", ".local", "deploy/compose.env", "tests"} <= ignored
    copied = {a.split()[0] for i, a in _instructions() if i == "COPY"}
    assert copied & ignored == set()
