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


def _first_party_imports(folder: Path) -> set[str]:
    """Top-level names of this project's own modules that ``folder``'s code imports (anywhere in a module)."""
    import ast

    own = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} | {
        p.stem for p in (ROOT / "plugins").glob("*.py")}
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found.update(n.split(".")[0] for n in names if n.split(".")[0] in own)
    return found


def test_the_image_holds_every_module_the_services_import():
    """What dags/, plugins/ and pipelines/ import from this project is copied into the image, except the
    development-only sample builder (``python -m pipelines sample build`` runs from a checkout)."""
    steps = _instructions()
    assert [a for i, a in steps if i == "USER"] == ["${AIRFLOW_UID}:0"]  # not root (Airflow's image convention)
    copied = {a.split()[0] for i, a in steps if i == "COPY"}
    assert all((ROOT / path).exists() for path in copied), copied
    plugin_modules = {p.stem for p in (ROOT / "plugins").glob("*.py")} if "plugins" in copied else set()
    needed = set().union(*(_first_party_imports(ROOT / f) for f in ("dags", "plugins", "pipelines"))) - {"sample"}
    assert needed - copied - plugin_modules == set()
    assert {"requirements.txt", "config", "expectations"} <= copied  # read at run time by pipelines.config / GX


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
