"""Validate a curated batch (a ``pyarrow.Table``) against an expectation suite with GX Core 1.x.

Great Expectations, pandas and pyarrow are imported inside the functions, never at module
import: DAG files import ``pipelines.validate`` at parse time and must stay light.

Speed: the suite is first run with ``BOOLEAN_ONLY`` (pass/fail only, GX's cheapest result
format); only when something fails are the failed expectations run again with ``SUMMARY`` to
collect a few unexpected values, over only the columns they read. A valid batch therefore
pays for one cheap pass, and a failing one for a second pass over the failed expectations.
GX's batch fingerprint (an md5 of the whole frame) is switched off for these runs; see
``_gx_batch_fingerprint``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.validate.report import ValidationReport, summarize_failure
from pipelines.validate.suite import read_suite_file, suite_parameter_names

if TYPE_CHECKING:
    from types import ModuleType

    import pandas as pd
    import pyarrow as pa

#: Result format of the first pass over the whole suite.
FIRST_PASS_RESULT_FORMAT: str = "BOOLEAN_ONLY"
#: Result format of the second pass over the failed expectations. GX lists up to 20 offending
#: values in row order (repeats included); the report keeps the first 5 distinct ones.
DETAIL_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 20,
    "include_unexpected_rows": False,
}
# Carried in each expectation's meta so results, which GX returns in its own order, can be put
# back in suite order.
_POSITION_KEY = "pipelines.validate.position"
_FINGERPRINT_LOCK = threading.Lock()


def validate_batch(
    *,
    table: pa.Table,
    suite_path: Path,
    parameters: Mapping[str, object],
) -> ValidationReport:
    """Validate a curated batch against an expectation suite file.

    Args:
        table: The curated batch.
        suite_path: The suite JSON file (e.g. ``expectations/curated_batch.json``).
        parameters: Values for the suite parameters the suite uses (``{"$PARAMETER": name}``),
            e.g. ``{"domains": ["legal", "medical"]}``. Every parameter the suite uses must be
            given; extra ones are ignored.

    Returns:
        The ``ValidationReport``. A batch that fails expectations is a normal outcome, reported
        with ``success=False``; it does not raise.

    Raises:
        TypeError: ``table`` is not a ``pyarrow.Table``.
        ValueError: The suite file is missing or invalid, or a suite parameter is missing.
    """
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        raise TypeError(
            f"table must be a pyarrow.Table, got {type(table).__name__}: convert it with pyarrow.table(...)"
        )
    suite_file = read_suite_file(suite_path)
    expectation_parameters = _expectation_parameters(suite_file.suite, parameters, source=str(suite_path))

    gx = _import_great_expectations()
    started = time.perf_counter()
    try:
        return _validate(gx, table, suite_file=suite_file, suite_path=suite_path,
                         expectation_parameters=expectation_parameters, started=started)
    finally:
        # GX's context, data source, execution engine and validation results reference each other in
        # cycles that hold the batch's pandas frame; reference counting never frees them, so without a
        # collection each run (one per 10,000-row chunk in the weekly step) kept its frame alive until
        # the cyclic collector happened to run: validation RSS grew with the partition (469 MB at 10k
        # documents, 1,161 MB at 100k). Collecting here keeps it flat at about one chunk.
        gc.collect()


def _validate(gx: ModuleType, table: pa.Table, *, suite_file: Any, suite_path: Path,
              expectation_parameters: Mapping[str, object], started: float) -> ValidationReport:
    suite_dict = suite_file.suite
    suite = _build_suite(gx, suite_dict, source=str(suite_path))
    dataframe = arrow_to_pandas(table)
    run = _suite_runner(gx, expectation_parameters)

    first = run(suite, dataframe, FIRST_PASS_RESULT_FORMAT)
    failed = [result for result in first.results if not result.success]
    # An expectation GX could not evaluate (e.g. its column is missing) already carries its error.
    errored = [result for result in failed if _raised(result.exception_info)]
    to_detail = [
        _rerunnable(result.expectation_config.to_json_dict())
        for result in failed
        if not _raised(result.exception_info)
    ]
    detailed = []
    if to_detail:
        detail_suite = gx.ExpectationSuite(name=f"{suite.name}.failed", expectations=to_detail)
        detailed = run(detail_suite, _columns_read_by(dataframe, to_detail), DETAIL_RESULT_FORMAT).results
    summaries = sorted(
        ((_position(result), summarize_failure(result.to_json_dict())) for result in [*errored, *detailed]),
        key=lambda item: item[0],
    )
    seconds = time.perf_counter() - started

    return ValidationReport(
        success=bool(first.success),
        suite_name=suite_dict["name"],
        suite_version=str(suite_dict.get("meta", {}).get("version", "")),
        suite_sha256=suite_file.sha256,
        evaluated=int(first.statistics["evaluated_expectations"]),
        failed=tuple(summary for _, summary in summaries),
        rows=table.num_rows,
        seconds=seconds,
    )


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Convert a batch to the pandas frame GX validates.

    The plain conversion is already the fast one. With pandas 3, strings become the
    pyarrow-backed ``str`` dtype: no Python objects, about 0.05 s for a million 500-byte texts,
    and GX's regex, length and set checks run in Arrow compute. A nullable int64 column becomes
    float64 with NaN, which GX's between-check evaluates vectorised and skips as null.
    ``types_mapper=pd.ArrowDtype`` gains nothing on the strings and sends ``int64[pyarrow]``
    columns down GX's row-by-row Python path (about 0.6 s per million ratings);
    benchmarks/gx_validate.py compares the two.

    Args:
        table: The batch.

    Returns:
        A DataFrame with the same columns.
    """
    return table.to_pandas()


def _expectation_parameters(
    suite: Mapping[str, Any], parameters: Mapping[str, object], *, source: str
) -> dict[str, object]:
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"parameters must be a mapping of suite parameter name to value, got {type(parameters).__name__}"
        )
    needed = suite_parameter_names(suite)
    missing = sorted(needed - set(parameters))
    if missing:
        raise ValueError(
            f"expectation suite {source!r} uses suite parameter(s) {missing} but parameters only has "
            f"{sorted(parameters)}: pass e.g. parameters={{{missing[0]!r}: [...]}} to validate_batch"
        )
    return {name: _as_json_value(value) for name, value in parameters.items() if name in needed}


def _as_json_value(value: object) -> object:
    # Sets have no order; lists keep the recorded results reproducible.
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _import_great_expectations() -> ModuleType:
    # No usage statistics from pipeline workers; the context config below says so as well.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # GX logs ~200 INFO lines per context (decorator and datasource bookkeeping) into a task log
    # configured at INFO; keep its warnings unless someone configured the logger on purpose.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _suite_runner(
    gx: ModuleType, expectation_parameters: Mapping[str, object], *, fingerprint: bool = False
) -> Callable[..., Any]:
    """A function that runs a suite over a DataFrame in a fresh in-memory GX context.

    ``fingerprint=True`` keeps GX's batch fingerprint (see ``_gx_batch_fingerprint``); the
    benchmark uses it to show what it costs.
    """
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    context = gx.get_context(
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        ),
        mode="ephemeral",
    )
    asset = context.data_sources.add_pandas(name="curated").add_dataframe_asset(name="batch")
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_batch")

    def run(suite: Any, dataframe: pd.DataFrame, result_format: str | dict[str, Any]) -> Any:
        # A ValidationDefinition loads the batch once per run; Batch.validate would load (and
        # fingerprint) the whole frame again on top of get_batch.
        definition = gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=context.suites.add(suite))
        with _gx_batch_fingerprint(enabled=fingerprint):
            return definition.run(
                batch_parameters={"dataframe": dataframe},
                expectation_parameters=dict(expectation_parameters),
                result_format=result_format,
            )

    return run


@contextlib.contextmanager
def _gx_batch_fingerprint(*, enabled: bool) -> Iterator[None]:
    """Switch GX's pandas batch fingerprint off (unless ``enabled``) for the duration of a run.

    GX's pandas engine md5-hashes every batch under 1 GB in memory (``HASH_THRESHOLD``) to store
    a ``pandas_data_fingerprint`` batch marker. Nothing reads it here (manifests record our own
    content digests), and on a 1M-row batch of 500-byte texts the hashing is about 60% of the
    run (benchmarks/gx_validate.py), so runs set the threshold to 0 and put it back after. A GX
    release without the constant only runs slower. The lock keeps two threads from interleaving
    the save and restore; GX's current-context handling is process-global anyway.
    """
    from great_expectations.execution_engine import pandas_execution_engine as engine

    with _FINGERPRINT_LOCK:
        if enabled or not hasattr(engine, "HASH_THRESHOLD"):
            yield
            return
        saved = engine.HASH_THRESHOLD
        engine.HASH_THRESHOLD = 0
        try:
            yield
        finally:
            engine.HASH_THRESHOLD = saved


def _columns_read_by(dataframe: pd.DataFrame, expectations: list[dict[str, Any]]) -> pd.DataFrame:
    """The part of the frame the given expectations read: their columns, or all for table-level ones.

    GX evaluates a column check on a nullable column by first dropping the null rows from the
    whole frame (copying every column, texts included), so re-running a failed ``rating`` check
    on the full frame would cost more than the rest of the detail pass.
    """
    columns: list[str] = []
    for expectation in expectations:
        kwargs = expectation["kwargs"]
        named = [kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs]
        named += list(kwargs.get("column_list") or ())
        if not named:
            return dataframe
        columns += [column for column in named if column not in columns]
    return dataframe[columns]


def _build_suite(gx: ModuleType, suite: Mapping[str, Any], *, source: str) -> Any:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for position, entry in enumerate(suite["expectations"]):
        try:
            configuration = ExpectationConfiguration(
                type=entry["type"],
                kwargs=dict(entry["kwargs"]),
                meta={**(entry.get("meta") or {}), _POSITION_KEY: position},
            )
            expectations.append(configuration.to_domain_obj())
        except Exception as exc:  # GX raises several unrelated types for a bad configuration.
            raise ValueError(
                f"expectation suite {source!r}, expectations[{position}] ({entry['type']}) is not a valid "
                f"GX {gx.__version__} expectation: {exc}"
            ) from exc
    return gx.ExpectationSuite(name=suite["name"], expectations=expectations, meta=dict(suite.get("meta") or {}))


def _rerunnable(configuration: Mapping[str, Any]) -> dict[str, Any]:
    # The first pass resolved the suite parameters and stamped the batch id into kwargs; the
    # batch id belongs to the new run.
    kwargs = {key: value for key, value in configuration["kwargs"].items() if key != "batch_id"}
    return {"type": configuration["type"], "kwargs": kwargs, "meta": dict(configuration.get("meta") or {})}


def _position(result: Any) -> int:
    return int((result.expectation_config.meta or {}).get(_POSITION_KEY, 1 << 30))


def _raised(exception_info: Mapping[str, Any] | None) -> bool:
    if not exception_info:
        return False
    if "raised_exception" in exception_info:
        return bool(exception_info["raised_exception"])
    return any(isinstance(info, Mapping) and info.get("raised_exception") for info in exception_info.values())
