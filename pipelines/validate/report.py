"""The result of validating a batch, and the pure logic that condenses GX results into it.

Nothing here imports Great Expectations: the functions read the JSON form of GX validation
results (``ExpectationValidationResult.to_json_dict()``), so they are tested on plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: How many distinct unexpected values a failure keeps (GX's ``partial_unexpected_count``).
MAX_UNEXPECTED_VALUES = 5
#: Longest string kept for one unexpected or observed value; longer ones are cut.
MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class ValidationReport:
    """What validating one batch against one suite found.

    Attributes:
        success: True when every expectation passed.
        suite_name: The suite's ``name``.
        suite_version: The suite's ``meta.version`` ("" when it has none).
        suite_sha256: Hex sha256 of the suite file bytes: the suite version recorded in manifests.
        evaluated: How many expectations were evaluated.
        failed: One small dict per failed expectation, in suite order, with keys ``expectation``
            (the GX type), ``column`` (or None for table-level ones), ``unexpected_count`` (or None),
            ``unexpected_values`` (up to 5 distinct offending values as strings, in row order),
            ``observed`` (what a table-level expectation saw, or None) and ``error`` (the message
            when GX could not evaluate the expectation, or None).
        rows: Rows in the batch.
        seconds: Wall time of the conversion to pandas and the validation (the one-time import of
            Great Expectations is not included).
    """

    success: bool
    suite_name: str
    suite_version: str
    suite_sha256: str
    evaluated: int
    failed: tuple[dict[str, Any], ...]
    rows: int
    seconds: float

    def __post_init__(self) -> None:
        if self.success == bool(self.failed):
            raise ValueError(
                f"ValidationReport(success={self.success}) contradicts {len(self.failed)} failed expectation(s)"
            )
        if self.evaluated < len(self.failed) or self.rows < 0 or self.seconds < 0:
            raise ValueError(
                f"ValidationReport counts are inconsistent: evaluated={self.evaluated}, "
                f"failed={len(self.failed)}, rows={self.rows}, seconds={self.seconds}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for manifests, logs and XCom."""
        return {
            "success": self.success,
            "suite_name": self.suite_name,
            "suite_version": self.suite_version,
            "suite_sha256": self.suite_sha256,
            "evaluated": self.evaluated,
            "failed": [{**entry, "unexpected_values": list(entry["unexpected_values"])} for entry in self.failed],
            "rows": self.rows,
            "seconds": round(self.seconds, 6),
        }


def summarize_failure(result: Mapping[str, Any]) -> dict[str, Any]:
    """Condense one failed GX expectation result into a small dict.

    Args:
        result: The JSON form of a GX ``ExpectationValidationResult``.

    Returns:
        A dict with the keys described in ``ValidationReport.failed``.
    """
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    details = result.get("result") or {}
    unexpected_count = details.get("unexpected_count")
    return {
        "expectation": config.get("type", "<unknown>"),
        "column": kwargs.get("column"),
        "unexpected_count": int(unexpected_count) if unexpected_count is not None else None,
        "unexpected_values": distinct_values(details.get("partial_unexpected_list") or ()),
        "observed": _observed(details),
        "error": _error_message(result.get("exception_info")),
    }


def distinct_values(values: Iterable[object], *, limit: int = MAX_UNEXPECTED_VALUES) -> tuple[str, ...]:
    """The first ``limit`` distinct values, in order, as short strings (nulls become ``"null"``).

    Args:
        values: Offending values as GX lists them (row order, repeats included).
        limit: How many to keep.

    Returns:
        The distinct values as strings.
    """
    kept: list[str] = []
    for value in values:
        text = format_value(value)
        if text not in kept:
            kept.append(text)
            if len(kept) == limit:
                break
    return tuple(kept)


def format_value(value: object) -> str:
    """Render one value for a report.

    Integral floats print as integers because pandas turns a nullable int64 column with nulls
    into float64 (a rating of 7 arrives as 7.0); long strings are cut to ``MAX_VALUE_CHARS``.

    Args:
        value: A value from a GX result.

    Returns:
        A short string.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}...({len(text)} chars)"
    return text


def _observed(details: Mapping[str, Any]) -> str | None:
    mismatched = (details.get("details") or {}).get("mismatched")
    if isinstance(mismatched, Mapping):
        parts = [
            f"{key}: {', '.join(map(str, mismatched[key]))}" for key in ("unexpected", "missing") if mismatched.get(key)
        ]
        return "; ".join(parts) or None
    if "observed_value" not in details:
        return None
    observed = details["observed_value"]
    if isinstance(observed, list):
        return format_value(", ".join(map(str, observed)))
    return format_value(observed)


def _error_message(exception_info: object) -> str | None:
    # GX reports one {raised_exception, exception_message, ...} dict, or one per failing metric.
    if not isinstance(exception_info, Mapping):
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    messages = [
        str(info.get("exception_message") or "exception raised")
        for info in infos
        if isinstance(info, Mapping) and info.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None
