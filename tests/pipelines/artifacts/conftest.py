"""Fixtures of the artifact tests: a local store and pushed fake models."""

from __future__ import annotations

import pytest

from _artifacts_helpers import make_folder
from pipelines.artifacts import push_artifact
from pipelines.storage import LocalObjectStore


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "bucket")


@pytest.fixture
def pushed(tmp_path, store):
    """``pushed(name, seed=..., metrics=...)`` -> ArtifactRef of a fake model pushed to ``store``."""

    def make(name: str, *, seed: str | None = None, metrics: dict | None = None, domain: str = "legal",
             version: str = "1.0"):
        folder = make_folder(tmp_path / "models", name, seed=seed or name, metrics=metrics, domain=domain,
                             version=version)
        return push_artifact(store, folder, domain=domain)

    return make
