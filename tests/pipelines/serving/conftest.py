"""Serving tests: one torch thread (a shared 2-core machine), no model hub."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # serving_helpers.py


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)
    yield
