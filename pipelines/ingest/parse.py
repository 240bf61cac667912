"""Parse landing files (JSONL, CSV, Parquet; UTF-8 or GB18030) into raw records.

Pure functions: bytes in, records and rejections out. A file that cannot be read as a whole
(bad encoding, wrong columns, unreadable Parquet, unknown format) is rejected as a file; a line
that cannot be read (truncated or invalid JSON, not an object) is rejected as a record, and the
rest of the file goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

# The columns a landing file of each source kind may carry (the JSON Schema of the standardized
# record decides types; this only decides whether a file is shaped right).
COLUMNS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "files": (frozenset({"text"}),
              frozenset({"text", "id", "label", "created_at", "language", "question", "answer", "subject_id"})),
    "feedback": (
        frozenset({"request_id", "domain", "model_version", "question", "answer", "rating"}),
        frozenset({"request_id", "domain", "model_version", "question", "answer", "rating", "correction", "created_at"}),
    ),
}
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
RAW_SNIPPET = 4096


@dataclass(frozen=True)
class Rejection:
    """Something quarantined: a whole file (``line`` 0) or one record, with the rule that rejected it."""

    source_uri: str
    stage: str
    reason: str
    detail: str = ""
    raw: str | None = None

    @property
    def is_file(self) -> bool:
        return "#" not in self.source_uri

    def to_dict(self) -> dict[str, object]:
        return {"source_uri": self.source_uri, "stage": self.stage, "reason": self.reason,
                "detail": self.detail, "raw": self.raw}


@dataclass
class ParsedFile:
    """The records of one file, in line order, as ``(line, raw_dict)``, plus what was rejected."""

    key: str
    records: list[tuple[int, dict]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    encoding: str = ""
    file_error: Rejection | None = None


def source_uri(key: str, line: int) -> str:
    return f"{key}#L{line}"


def file_format(key: str) -> str | None:
    name = key.rsplit("/", 1)[-1].lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def decode(data: bytes, encodings: Sequence[str]) -> tuple[str, str] | None:
    """Decode with the first encoding that accepts every byte; None if none does."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return None


def _check_columns(columns: Sequence[str], kind: str) -> str | None:
    required, allowed = COLUMNS[kind]
    missing = sorted(required - set(columns))
    unknown = sorted(set(columns) - allowed)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unknown:
            parts.append(f"unknown {unknown}")
        return "; ".join(parts) + f"; expected required {sorted(required)}, optional {sorted(allowed - required)}"
    return None


def parse_file(*, key: str, data: bytes, kind: str, encodings: Sequence[str]) -> ParsedFile:
    """Parse one landing file.

    Args:
        key: the object key (used in ``source_uri`` of every record and rejection).
        data: the file's bytes.
        kind: the source kind (``files`` or ``feedback``), which decides the allowed columns.
        encodings: text encodings to try, in order.

    Returns:
        The parsed file; ``file_error`` is set when the file as a whole was rejected.
    """
    result = ParsedFile(key=key)
    fmt = file_format(key)
    if fmt is None:
        result.file_error = Rejection(key, "parse", "unsupported_format",
                                      f"use one of {sorted(FORMATS)}")
        return result
    if fmt == "parquet":
        return _parse_parquet(result, data, kind)
    decoded = decode(data, encodings)
    if decoded is None:
        result.file_error = Rejection(key, "parse", "bad_encoding",
                                      f"not valid {' or '.join(encodings)}")
        return result
    text, result.encoding = decoded
    if fmt == "jsonl":
        _parse_jsonl(result, text)
    else:
        _parse_csv(result, text, kind)
    return result


def _parse_jsonl(result: ParsedFile, text: str) -> None:
    loads = json.loads
    append = result.records.append
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = loads(line)
        except ValueError as exc:
            truncated = number == len(lines) and not text.endswith("\n")
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "truncated_json" if truncated else "invalid_json",
                str(exc), line[:RAW_SNIPPET]))
            continue
        if not isinstance(value, dict):
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "not_an_object",
                f"a JSON {type(value).__name__}, expected an object", line[:RAW_SNIPPET]))
            continue
        append((number, value))


def _parse_csv(result: ParsedFile, text: str, kind: str) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        result.file_error = Rejection(result.key, "parse", "invalid_csv", str(exc))
        return
    header = [h.strip() for h in header]
    problem = _check_columns(header, kind)
    if problem:
        result.file_error = Rejection(result.key, "parse", "wrong_columns", problem)
        return
    width = len(header)
    try:
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1  # a quoted newline spans lines: use the first
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                result.rejections.append(Rejection(
                    source_uri(result.key, number), "parse", "wrong_field_count",
                    f"{len(row)} fields, header has {width}", ",".join(row)[:RAW_SNIPPET]))
                continue
            # CSV has no null: an empty optional cell means "absent".
            result.records.append((number, {h: v for h, v in zip(header, row) if v != "" or h == "text"}))
    except csv.Error as exc:
        result.rejections.append(Rejection(source_uri(result.key, reader.line_num), "parse", "invalid_csv", str(exc)))


def _parse_parquet(result: ParsedFile, data: bytes, kind: str) -> ParsedFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        result.file_error = Rejection(result.key, "parse", "unreadable_parquet", str(exc)[:500])
        return result
    problem = _check_columns(table.column_names, kind)
    if problem:
        result.file_error = Rejection(result.key, "parse", "wrong_columns", problem)
        return result
    for number, row in enumerate(table.to_pylist(), start=1):
        result.records.append((number, {k: v for k, v in row.items() if v is not None or k == "text"}))
    return result
