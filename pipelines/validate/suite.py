"""Expectation suites as data files: reading, checking their shape, and finding their parameters.

A suite is the JSON that GX Core 1.x serialises an ``ExpectationSuite`` to (``name``,
``expectations`` as ``{"type", "kwargs", "meta"}``, ``meta``), kept in ``expectations/`` and
versioned by the sha256 of its bytes. Values that differ between runs (the configured domains)
are GX suite parameters, ``{"$PARAMETER": "<name>"}``, supplied when validating. This module
uses only the standard library so that DAG files can import it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARAMETER_KEY = "$PARAMETER"
# The keys GX 1.x writes for one expectation (ExpectationConfiguration.to_json_dict()).
_EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta", "notes", "description", "severity", "id", "rendered_content"})


@dataclass(frozen=True)
class SuiteFile:
    """A suite file as read from disk.

    Attributes:
        path: Where it was read from.
        sha256: Hex sha256 of the file bytes: the suite version recorded in manifests.
        suite: The parsed suite (checked by ``check_suite``).
    """

    path: Path
    sha256: str
    suite: dict[str, Any]


def load_suite(path: Path | str) -> dict[str, Any]:
    """Read and check an expectation suite data file.

    Args:
        path: The suite JSON file, e.g. ``expectations/curated_batch.json``.

    Returns:
        The suite as a dict (``name``, ``expectations``, ``meta``, ...), ready for
        ``great_expectations.ExpectationSuite(**suite)``.

    Raises:
        ValueError: The file is missing, unreadable, not JSON, or not a suite; the message
            names the file and what to fix.
    """
    return read_suite_file(path).suite


def read_suite_file(path: Path | str) -> SuiteFile:
    """Read a suite file, returning its parsed content together with the sha256 of its bytes.

    Args:
        path: The suite JSON file.

    Returns:
        The ``SuiteFile``; ``sha256`` is computed over exactly the bytes that were parsed.

    Raises:
        ValueError: As for ``load_suite``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"expectation suite {str(path)!r} does not exist: check validation.suite in config/pipeline.yaml "
            "(paths are relative to the project root) or restore the file from expectations/"
        ) from None
    except OSError as exc:
        raise ValueError(
            f"expectation suite {str(path)!r} cannot be read ({exc}): check the path and permissions"
        ) from exc
    try:
        suite = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"expectation suite {str(path)!r} is not valid UTF-8 JSON ({exc}): fix the file "
            f"(`python -m json.tool {path}` shows where it breaks)"
        ) from exc
    check_suite(suite, source=str(path))
    return SuiteFile(path=path, sha256=hashlib.sha256(raw).hexdigest(), suite=suite)


def check_suite(suite: object, *, source: str = "<suite>") -> None:
    """Check that a parsed object has the shape of a GX 1.x expectation suite.

    GX itself drops an expectation whose configuration it cannot build with only a logged
    error, so a typo would silently weaken the suite; the shape is checked here instead.

    Args:
        suite: The parsed JSON.
        source: Where it came from, for error messages.

    Raises:
        ValueError: The object is not a suite; the message says which part and how to fix it.
    """
    if not isinstance(suite, dict):
        raise ValueError(f"expectation suite {source!r} must be a JSON object with 'name' and 'expectations'")
    name = suite.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"expectation suite {source!r} needs a non-empty string 'name'")
    expectations = suite.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise ValueError(f"expectation suite {source!r} needs a non-empty list 'expectations'")
    for index, expectation in enumerate(expectations):
        where = f"expectation suite {source!r}, expectations[{index}]"
        if not isinstance(expectation, dict):
            raise ValueError(f"{where} must be an object with 'type' and 'kwargs'")
        if not isinstance(expectation.get("type"), str) or not expectation["type"].startswith("expect_"):
            raise ValueError(
                f"{where} needs a 'type' naming a GX expectation, e.g. 'expect_column_values_to_be_unique'"
            )
        if not isinstance(expectation.get("kwargs"), dict):
            raise ValueError(f"{where} ({expectation['type']}) needs a 'kwargs' object")
        unknown = set(expectation) - _EXPECTATION_KEYS
        if unknown:
            raise ValueError(
                f"{where} ({expectation['type']}) has unknown keys {sorted(unknown)}: use 'type' and 'kwargs'"
            )
    meta = suite.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"expectation suite {source!r}: 'meta' must be an object")


def suite_parameter_names(suite: Mapping[str, Any]) -> frozenset[str]:
    """Names of the suite parameters (``{"$PARAMETER": name}``) that a suite's expectations use.

    Args:
        suite: A checked suite dict.

    Returns:
        The parameter names; the values must be supplied when validating.
    """
    names: set[str] = set()

    def visit(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get(PARAMETER_KEY), str):
                names.add(value[PARAMETER_KEY])
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for expectation in suite["expectations"]:
        visit(expectation["kwargs"])
    return frozenset(names)
