"""Validate stage: check a curated batch against a Great Expectations suite kept as a data file.

Importing this package is cheap (standard library only); Great Expectations, pandas and pyarrow
are imported when ``validate_batch`` runs, so DAG files may import it at parse time.

Example:
    >>> report = validate_batch(
    ...     table=batch,
    ...     suite_path=Path("expectations/curated_batch.json"),
    ...     parameters={"domains": ["legal", "medical"]},
    ... )
    >>> report.success, report.suite_sha256, report.failed
"""

from pipelines.validate.gx_runner import validate_batch
from pipelines.validate.report import ValidationReport
from pipelines.validate.suite import SuiteFile, load_suite, read_suite_file, suite_parameter_names

__all__ = [
    "SuiteFile",
    "ValidationReport",
    "load_suite",
    "read_suite_file",
    "suite_parameter_names",
    "validate_batch",
]
