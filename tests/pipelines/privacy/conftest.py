"""Fixtures for the privacy stage: one thread, a folder store, a small budget that a few runs exhaust."""

from __future__ import annotations

import pytest

from pipelines.privacy import PrivacyConfig
from pipelines.storage import LocalObjectStore

@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "bucket")


@pytest.fixture
def config():
    return PrivacyConfig(epsilon=1.0, delta=1e-5, weekly_share=0.5, weekly_epsilon=0.5, monthly_epsilon=0.5,
                         accountant="prv")
