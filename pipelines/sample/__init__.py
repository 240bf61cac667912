"""Bundled sample landing data: a deterministic generator and its documented problems.

``build_sample`` writes ``data/sample`` (see its README.md); ``main`` is the CLI behind
``python -m pipelines sample build``. The names below are loaded on first use so that
``python -m pipelines.sample.build`` does not import the module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_SEED",
    "PROBLEM_KINDS",
    "SampleProblem",
    "SampleSummary",
    "build_sample",
    "main",
    "normalize_text",
    "week_start",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("pipelines.sample.build"), name)
    raise AttributeError(f"module 'pipelines.sample' has no attribute {name!r}")
