"""Rows of a drafted file and their rendering as JSON lines, CSV and Parquet bytes (broken on purpose where planned)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from sample.spec import (
    LANDING_PREFIX,
    _BASE_COLUMNS,
    _DIALOGUE_COLUMNS,
    _FileSpec,
    _UNDECODABLE_BYTES,
    _UNDECODABLE_SENTINEL,
    _WRONG_COLUMN_NAMES,
)

# --------------------------------------------------------------------------------------------
# Rows and their rendering


@dataclass(eq=False)
class _Row:
    """One line or row of a file being drafted; compared by identity."""

    record: dict[str, object] | None = None
    raw: str | None = None  # written verbatim: not an object, or cut mid-JSON
    undecodable: bool = False  # bytes in neither UTF-8 nor GB18030 go inside the text


@dataclass
class _Draft:
    spec: _FileSpec
    rows: list[_Row] = field(default_factory=list)



_NOTES = """\
Operator notes, 2026-10-28
- Upstream export job re-run after the 10-27 outage; batch-01.jsonl replaces nothing.
- Medical feed sent a 3 KB parquet file yesterday; vendor ticket VND-2291 is open.
- Next legal drop expected on 10-30 as CSV.
"""


def _key(path: str) -> str:
    return f"{LANDING_PREFIX}/{path}"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def _spaces_and_tabs(text: str) -> str:
    words = text.split(" ")
    if len(words) < 3:
        raise ValueError(f"need at least two spaces to vary: {text!r}")
    separators = ["  " if i % 2 == 0 else " \t" for i in range(len(words) - 1)]
    return words[0] + "".join(sep + word for sep, word in zip(separators, words[1:]))


def _half_width_punctuation(text: str) -> str:
    return text.translate(str.maketrans({"，": ",", "！": "!", "？": "?", "：": ":", "；": ";"}))


def _json_line(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def _render_jsonl(draft: _Draft) -> bytes:
    out = io.BytesIO()
    encoding = draft.spec.encoding
    for index, row in enumerate(draft.rows):
        last = index == len(draft.rows) - 1
        if row.raw is not None:
            out.write(row.raw.encode(encoding))
            if not last or not _is_truncated(row.raw):
                out.write(b"\n")
            continue
        if row.undecodable:
            text = str(row.record["text"])
            middle = len(text) // 2
            record = dict(row.record, text=text[:middle] + _UNDECODABLE_SENTINEL + text[middle:])
            line = _json_line(record).encode(encoding)
            if line.count(_UNDECODABLE_SENTINEL.encode()) != 1:
                raise AssertionError("the undecodable sentinel must occur once")
            out.write(line.replace(_UNDECODABLE_SENTINEL.encode(), _UNDECODABLE_BYTES) + b"\n")
            continue
        out.write(_json_line(row.record).encode(encoding) + b"\n")
    return out.getvalue()


def _is_truncated(raw: str) -> bool:
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        return True
    return False


def _columns(domain: str) -> tuple[str, ...]:
    return _BASE_COLUMNS + (_DIALOGUE_COLUMNS if domain == "customer_service" else ())


def _render_csv(draft: _Draft) -> bytes:
    columns = _columns(draft.spec.domain)
    header = columns
    if draft.spec.role == "wrong_columns":
        header = tuple(_WRONG_COLUMN_NAMES.get(c, c) for c in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in draft.rows:
        if row.record is None or row.undecodable:
            raise ValueError(f"{draft.spec.key}: CSV rows must be plain records")
        writer.writerow(["" if row.record.get(c) is None else str(row.record[c]) for c in columns])
    return buffer.getvalue().encode(draft.spec.encoding)


def _render_parquet(draft: _Draft) -> bytes:
    columns = _columns(draft.spec.domain)
    for row in draft.rows:
        if row.record is None or row.undecodable:
            raise ValueError(f"{draft.spec.key}: Parquet rows must be plain records")
    table = pa.table(
        {c: pa.array([r.record.get(c) for r in draft.rows], type=pa.string()) for c in columns}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()
