"""The console world (tests/_console_world.py), built once per session and copied for each test."""

from __future__ import annotations

import pytest

from _console_world import world_copy


@pytest.fixture(scope="session")
def _world_cache(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("console-world")


@pytest.fixture
def world(tmp_path, _world_cache):
    """``(config, store, {"queue": key, "artifacts": [ids of 1.0, 1.1, 1.2]})``; 1.1 is production."""
    return world_copy(tmp_path / "store", _world_cache)
