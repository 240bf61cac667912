"""Parse landing files (JSONL, CSV, Parquet; UTF-8 or GB18030) into raw records.

Pure functions: bytes in, records and rejections out. A file that cannot be read as a whole
(bad or uncertain encoding, wrong columns, unreadable Parquet, unknown format) is rejected as a file;
a line or row that cannot be read (truncated, invalid or too deeply nested JSON, a lone surrogate, a
CSV field over ``MAX_FIELD_CHARS``) is rejected as a record, and the rest of the file goes on.

``ParsedFile.rows`` counts what the reader saw (non-blank lines, CSV rows, Parquet rows), not what
the parser emitted: every row is either a record or a rejection, which ``ParsedFile.unaccounted``
checks, so a parser that stops early cannot hide the rest of a file from reconciliation.
"""

from __future__ import annotations

import csv
import io
import json
import re
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
# The csv module's default field limit: a longer CSV field quarantines its row (``field_too_large``).
MAX_FIELD_CHARS = 131072
FILE, RECORD = "file", "record"
_RECORD_URI = re.compile(r"#L[1-9][0-9]*\Z")
# Deeper JSON than this is quarantined: the parser's own limit (~1000) leaves no room for the envelope
# ingest wraps a record in, and no landing record is nested this deep.
MAX_JSON_DEPTH = 64
# A JSON line that may decode to a lone UTF-16 surrogate (a valid pair is joined by json.loads).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


@dataclass(frozen=True)
class Rejection:
    """Something quarantined: a whole file (``kind`` ``file``, ``source_uri`` its key) or one record
    (``kind`` ``record``, ``source_uri`` ``<key>#L<line>``), with the rule that rejected it.

    ``kind`` is explicit because a file name may itself hold ``#``; left empty, it is read from the URI.
    """

    source_uri: str
    stage: str
    reason: str
    detail: str = ""
    raw: str | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.source_uri))
        if self.kind not in (FILE, RECORD):
            raise ValueError(f"Rejection kind {self.kind!r}: use {FILE!r} or {RECORD!r}")

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    def to_dict(self) -> dict[str, object]:
        return {"source_uri": self.source_uri, "stage": self.stage, "reason": self.reason,
                "detail": self.detail, "raw": self.raw, "kind": self.kind}


def kind_of(source_uri: str) -> str:
    """``record`` for a ``<key>#L<line>`` URI, else ``file`` (for rejections written without ``kind``)."""
    return RECORD if _RECORD_URI.search(source_uri) else FILE


def is_record(rejection: dict) -> bool:
    """Whether a staged or quarantined rejection (a dict) is one record rather than a whole file."""
    return (rejection.get("kind") or kind_of(rejection["source_uri"])) == RECORD


@dataclass
class ParsedFile:
    """The records of one file, in line order, as ``(line, raw_dict)``, plus what was rejected."""

    key: str
    records: list[tuple[int, dict]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    encoding: str = ""
    file_error: Rejection | None = None
    rows: int = 0  # rows the reader saw: each is a record or a rejection

    @property
    def unaccounted(self) -> int:
        """Rows seen but neither emitted nor rejected (0 unless the parser is wrong)."""
        return 0 if self.file_error else self.rows - len(self.records) - len(self.rejections)


def source_uri(key: str, line: int) -> str:
    return f"{key}#L{line}"


def file_format(key: str) -> str | None:
    name = key.rsplit("/", 1)[-1].lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def decode(data: bytes, encodings: Sequence[str]) -> tuple[str, str] | None:
    """Decode with the first encoding that accepts every byte and gives plausible text; None if none does.

    UTF-8 validates itself. A legacy multi-byte encoding (GB18030, Big5...) accepts most byte strings
    of another one, so its text is checked (``implausible_decode``) and an implausible decode skipped.
    """
    return decode_with_doubts(data, encodings)[0]


def decode_with_doubts(data: bytes, encodings: Sequence[str]) -> tuple[tuple[str, str] | None, list[str]]:
    """``decode``, plus why each encoding that accepted the bytes was not trusted (``as <enc>: <why>``)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    doubts = []
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        doubt = None if _self_validating(encoding) else implausible_decode(text)
        if doubt is None:
            return (text, encoding), doubts
        doubts.append(f"as {encoding}: {doubt}")
    return None, doubts


def _self_validating(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig", "ascii", "us-ascii")


# What Chinese text does not hold but a Big5 (or other) file decoded as GB18030 does: kana and
# bopomofo, and private-use characters where GB18030 has none and Big5 keeps its punctuation.
_ALIEN = re.compile("[\u3040-\u30ff\u3100-\u312f\u31a0-\u31bf]")
_PRIVATE = re.compile("[\ue000-\uf8ff\U000f0000-\U0010ffff]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def implausible_decode(text: str, *, max_alien_share: float = 0.02) -> str | None:
    """Why ``text`` (a legacy-encoding decode) is unlikely to be what the file holds, or None.

    Replacement or private-use characters are never plausible; kana and bopomofo among Han
    characters are not, above ``max_alien_share`` of them (a Big5 file read as GB18030: ~30 %).
    """
    problems = []
    replacement = text.count("\ufffd")
    if replacement:
        problems.append(f"{replacement} replacement character(s)")
    private = len(_PRIVATE.findall(text))
    if private:
        problems.append(f"{private} private-use character(s)")
    alien = len(_ALIEN.findall(text))
    if alien:
        han = len(_HAN.findall(text))
        if alien > max_alien_share * (han + alien):
            problems.append(f"{alien} kana/bopomofo among {han} Han characters")
    return ", ".join(problems) or None


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
                                      f"use one of {sorted(FORMATS)}", kind=FILE)
        return result
    if fmt == "parquet":
        return _parse_parquet(result, data, kind)
    decoded, doubts = decode_with_doubts(data, encodings)
    if decoded is None and doubts:  # bytes some encoding accepts, but no plausible text: never guess
        result.file_error = Rejection(key, "parse", "uncertain_encoding",
                                      "; ".join(doubts) + "; re-export the file as UTF-8 (or list its encoding, "
                                      "e.g. big5, in ingest.encodings)", kind=FILE)
        return result
    if decoded is None:
        result.file_error = Rejection(key, "parse", "bad_encoding",
                                      f"not valid {' or '.join(encodings)}", kind=FILE)
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
        result.rows += 1
        try:
            value = loads(line)
        except ValueError as exc:
            truncated = number == len(lines) and not text.endswith("\n")
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "truncated_json" if truncated else "invalid_json",
                str(exc), line[:RAW_SNIPPET], kind=RECORD))
            continue
        except RecursionError:
            value = _TOO_DEEP
        if value is _TOO_DEEP or (line.count("[") + line.count("{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH):
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "too_deeply_nested",
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels", line[:RAW_SNIPPET], kind=RECORD))
            continue
        if not isinstance(value, dict):
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "not_an_object",
                f"a JSON {type(value).__name__}, expected an object", line[:RAW_SNIPPET], kind=RECORD))
            continue
        if _SURROGATE_ESCAPE.search(line) and _lone_surrogate(value):
            # json.loads accepts "\ud800", but no UTF-8 writer downstream can store it.
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "lone_surrogate",
                "a \\uD800-\\uDFFF escape that is not half of a surrogate pair (not Unicode text)",
                line[:RAW_SNIPPET], kind=RECORD))
            continue
        append((number, value))


_TOO_DEEP = object()


def _depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (iterative: the value may be as deep as the parser allows)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _lone_surrogate(value: object) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse_csv(result: ParsedFile, text: str, kind: str) -> None:
    # The field limit is lifted while reading (and restored): at the limit the csv module raises in
    # the middle of a row and resumes inside a quoted field, which misreads the rows after it. The
    # oversize row is quarantined here instead, and every later row is read.
    previous_limit = csv.field_size_limit(max(len(text), MAX_FIELD_CHARS) + 1)
    try:
        _read_csv(result, text, kind)
    finally:
        csv.field_size_limit(previous_limit)


def _read_csv(result: ParsedFile, text: str, kind: str) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        result.file_error = Rejection(result.key, "parse", "invalid_csv", str(exc), kind=FILE)
        return
    header = [h.strip() for h in header]
    problem = _check_columns(header, kind)
    if problem:
        result.file_error = Rejection(result.key, "parse", "wrong_columns", problem, kind=FILE)
        return
    width = len(header)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # one unreadable row: quarantine it, read on
            number, start = start, reader.line_num + 1
            result.rows += 1
            result.rejections.append(Rejection(source_uri(result.key, number), "parse", "invalid_csv", str(exc),
                                               kind=RECORD))
            continue
        number, start = start, reader.line_num + 1  # a quoted newline spans lines: use the first
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        result.rows += 1
        if len(row) != width:
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "wrong_field_count",
                f"{len(row)} fields, header has {width}", ",".join(row)[:RAW_SNIPPET], kind=RECORD))
            continue
        longest = max(map(len, row))
        if longest > MAX_FIELD_CHARS:
            result.rejections.append(Rejection(
                source_uri(result.key, number), "parse", "field_too_large",
                f"a field of {longest} characters > {MAX_FIELD_CHARS}", ",".join(row)[:RAW_SNIPPET], kind=RECORD))
            continue
        # CSV has no null: an empty optional cell means "absent".
        result.records.append((number, {h: v for h, v in zip(header, row) if v != "" or h == "text"}))


def _parse_parquet(result: ParsedFile, data: bytes, kind: str) -> ParsedFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        result.file_error = Rejection(result.key, "parse", "unreadable_parquet", str(exc)[:500], kind=FILE)
        return result
    problem = _check_columns(table.column_names, kind)
    if problem:
        result.file_error = Rejection(result.key, "parse", "wrong_columns", problem, kind=FILE)
        return result
    result.rows = table.num_rows
    for number, row in enumerate(table.to_pylist(), start=1):
        result.records.append((number, {k: v for k, v in row.items() if v is not None or k == "text"}))
    return result
