"""parse_file on tiny inline landing files: JSONL, CSV, Parquet, encodings, file- and record-level rejections."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.ingest.parse import parse_file

ENCODINGS = ("utf-8", "gb18030")
KEY = "landing/legal/2024-06-03/a"
FILES_EXPECTED = ("expected required ['text'], optional ['answer', 'created_at', 'id', 'label', 'language', "
                  "'question', 'subject_id']")


def parse(suffix: str, data: bytes, kind: str = "files"):
    return parse_file(key=KEY + suffix, data=data, kind=kind, encodings=ENCODINGS)


def reasons(result) -> list[tuple[str, str]]:
    return [(r.source_uri, r.reason) for r in result.rejections]


# --- JSONL -------------------------------------------------------------------------------------

def test_jsonl_skips_blank_lines_and_keeps_line_numbers():
    result = parse(".jsonl", b'{"text": "a", "id": "x1"}\n\n   \n{"text": "b"}\n')
    assert result.records == [(1, {"text": "a", "id": "x1"}), (4, {"text": "b"})]
    assert result.rejections == []
    assert result.file_error is None
    assert result.encoding == "utf-8"


def test_jsonl_truncated_last_line_invalid_middle_line_and_list_line():
    data = b'{"text": "a"}\n{bad\n[1, 2]\n{"text": "b"}\n{"text": "c'
    result = parse(".jsonl", data)
    assert result.records == [(1, {"text": "a"}), (4, {"text": "b"})]
    assert reasons(result) == [
        (f"{KEY}.jsonl#L2", "invalid_json"),
        (f"{KEY}.jsonl#L3", "not_an_object"),
        (f"{KEY}.jsonl#L5", "truncated_json"),
    ]
    assert [r.raw for r in result.rejections] == ["{bad", "[1, 2]", '{"text": "c']
    assert result.rejections[1].detail == "a JSON list, expected an object"
    assert all(r.stage == "parse" and not r.is_file for r in result.rejections)
    assert result.file_error is None


def test_jsonl_invalid_last_line_followed_by_newline_is_not_truncated():
    result = parse(".jsonl", b'{"text": "a"}\n{"text": "b\n')
    assert result.records == [(1, {"text": "a"})]
    assert reasons(result) == [(f"{KEY}.jsonl#L2", "invalid_json")]


def test_ndjson_and_json_suffixes_parse_as_jsonl():
    for suffix in (".ndjson", ".json", ".JSONL"):
        assert parse(suffix, b'{"text": "a"}\n').records == [(1, {"text": "a"})]


# --- CSV ---------------------------------------------------------------------------------------

def test_csv_drops_empty_optional_cells_keeps_empty_text_and_rejects_wrong_field_count():
    data = b"text,label,id\nhello,,x1\n\nbye,neg,x2\na,b\n,pos,x3\n"
    result = parse(".csv", data)
    assert result.records == [
        (2, {"text": "hello", "id": "x1"}),
        (4, {"text": "bye", "label": "neg", "id": "x2"}),
        (6, {"text": "", "label": "pos", "id": "x3"}),
    ]
    assert reasons(result) == [(f"{KEY}.csv#L5", "wrong_field_count")]
    assert result.rejections[0].detail == "2 fields, header has 3"
    assert result.rejections[0].raw == "a,b"
    assert result.file_error is None


def test_csv_without_text_column_is_rejected_as_a_file():
    result = parse(".csv", b"label,id\npos,x1\n")
    assert result.records == []
    assert result.file_error is not None
    assert result.file_error.source_uri == f"{KEY}.csv"
    assert result.file_error.is_file
    assert result.file_error.reason == "wrong_columns"
    assert result.file_error.detail == f"missing ['text']; {FILES_EXPECTED}"


def test_csv_with_unknown_column_is_rejected_as_a_file():
    result = parse(".csv", b"text,colour\nhello,red\n")
    assert result.records == []
    assert result.file_error.reason == "wrong_columns"
    assert result.file_error.detail == f"unknown ['colour']; {FILES_EXPECTED}"


def test_csv_header_after_utf8_bom_is_recognised():
    result = parse(".csv", b"\xef\xbb\xbftext,id\nhello,x1\n")
    assert result.file_error is None
    assert result.records == [(2, {"text": "hello", "id": "x1"})]


def test_csv_feedback_columns():
    header = b"request_id,domain,model_version,question,answer,rating,correction\n"
    result = parse(".csv", header + b"r1,legal,m1,q?,a.,4,\nr2,legal,m1,q2?,a2.,1,fixed\n", kind="feedback")
    assert result.file_error is None
    assert result.records == [
        (2, {"request_id": "r1", "domain": "legal", "model_version": "m1", "question": "q?", "answer": "a.",
             "rating": "4"}),
        (3, {"request_id": "r2", "domain": "legal", "model_version": "m1", "question": "q2?", "answer": "a2.",
             "rating": "1", "correction": "fixed"}),
    ]


def test_csv_feedback_missing_required_column():
    result = parse(".csv", b"request_id,domain,question,answer,rating\nr1,legal,q?,a.,4\n", kind="feedback")
    assert result.records == []
    assert result.file_error.reason == "wrong_columns"
    assert result.file_error.detail.startswith("missing ['model_version']; ")


def test_files_kind_rejects_feedback_columns():
    result = parse(".csv", b"text,rating\nhello,4\n", kind="files")
    assert result.file_error.reason == "wrong_columns"
    assert result.file_error.detail.startswith("unknown ['rating']; ")


# --- Parquet -----------------------------------------------------------------------------------

def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def test_parquet_records_numbered_from_one_nulls_dropped_except_text():
    data = _parquet([{"text": "a", "label": "pos", "id": "x1"}, {"text": None, "label": None, "id": "x2"}])
    result = parse(".parquet", data)
    assert result.file_error is None
    assert result.records == [(1, {"text": "a", "label": "pos", "id": "x1"}), (2, {"text": None, "id": "x2"})]
    assert result.rejections == []


def test_parquet_with_unknown_column_is_rejected_as_a_file():
    result = parse(".parquet", _parquet([{"text": "a", "colour": "red"}]))
    assert result.records == []
    assert result.file_error.reason == "wrong_columns"


def test_garbage_parquet_is_unreadable():
    result = parse(".parquet", b"this is not parquet at all")
    assert result.records == []
    assert result.file_error.source_uri == f"{KEY}.parquet"
    assert result.file_error.reason == "unreadable_parquet"


# --- formats and encodings ---------------------------------------------------------------------

def test_txt_is_unsupported_format():
    result = parse(".txt", b"hello\n")
    assert result.records == []
    assert result.file_error.reason == "unsupported_format"
    assert result.file_error.detail == "use one of ['.csv', '.json', '.jsonl', '.ndjson', '.parquet']"


def test_gb18030_text_is_decoded_and_reported():
    data = '{"text": "合同已终止"}\n'.encode("gb18030")
    result = parse(".jsonl", data)
    assert result.encoding == "gb18030"
    assert result.records == [(1, {"text": "合同已终止"})]


def test_utf8_text_is_reported_as_utf8_and_bom_is_stripped():
    result = parse(".jsonl", b"\xef\xbb\xbf" + '{"text": "合同已终止"}\n'.encode("utf-8"))
    assert result.encoding == "utf-8"
    assert result.records == [(1, {"text": "合同已终止"})]
    assert result.rejections == []


def test_bytes_invalid_in_every_encoding_are_bad_encoding():
    result = parse(".jsonl", b'{"text": "\xff\xfe"}\n')
    assert result.records == []
    assert result.encoding == ""
    assert result.file_error.reason == "bad_encoding"
    assert result.file_error.detail == "not valid utf-8 or gb18030"


# --- nothing lost on bad input -------------------------------------------------------------------

def test_csv_field_over_the_limit_quarantines_its_row_and_every_later_row_is_read():
    import csv

    from pipelines.ingest.parse import MAX_FIELD_CHARS

    big = "x" * (MAX_FIELD_CHARS + 1)
    data = (f'text,id\nhello,x1\n{big},x2\nafter,x3\n"quoted {big}\nstill quoted",x4\nlast,x5\n').encode()
    limit = csv.field_size_limit()
    result = parse(".csv", data)
    assert result.records == [(2, {"text": "hello", "id": "x1"}), (4, {"text": "after", "id": "x3"}),
                              (7, {"text": "last", "id": "x5"})]
    assert reasons(result) == [(f"{KEY}.csv#L3", "field_too_large"), (f"{KEY}.csv#L5", "field_too_large")]
    assert [r.detail for r in result.rejections] == [
        f"a field of {MAX_FIELD_CHARS + 1} characters > {MAX_FIELD_CHARS}",
        f"a field of {MAX_FIELD_CHARS + 21} characters > {MAX_FIELD_CHARS}"]  # "quoted ", newline, "still quoted"
    assert (result.rows, result.unaccounted) == (5, 0)
    assert csv.field_size_limit() == limit  # restored


def test_rows_count_what_the_reader_saw():
    assert parse(".jsonl", b'{"text": "a"}\n\n{bad\n[1]\n').rows == 3
    assert parse(".csv", b"text,id\na,1\n\nb\n").rows == 2
    assert parse(".parquet", _parquet([{"text": "a"}, {"text": "b"}])).rows == 2


def test_jsonl_lone_surrogate_is_a_record_rejection_and_a_pair_is_kept():
    data = b'{"text": "a"}\n{"text": "bad \\ud800 half"}\n{"text": "pair \\ud83d\\ude00"}\n{"text": "b"}\n'
    result = parse(".jsonl", data)
    assert result.records == [(1, {"text": "a"}), (3, {"text": "pair \U0001F600"}), (4, {"text": "b"})]
    assert reasons(result) == [(f"{KEY}.jsonl#L2", "lone_surrogate")]
    assert result.rejections[0].raw == '{"text": "bad \\ud800 half"}'
    assert result.rejections[0].kind == "record"


def test_jsonl_deeply_nested_line_is_a_record_rejection():
    data = b'{"text": "a"}\n' + b"[" * 100_000 + b'\n{"text": "b"}\n'
    result = parse(".jsonl", data)
    assert result.records == [(1, {"text": "a"}), (3, {"text": "b"})]
    assert reasons(result) == [(f"{KEY}.jsonl#L2", "too_deeply_nested")]
    assert result.rejections[0].raw == "[" * 4096


TRADITIONAL = ['{"text": "本院認為，被告應當償還借款本金及利息。"}', '{"text": "勞動合同糾紛，當事人雙方協商解決。"}']


def test_big5_file_is_not_kept_as_gb18030_mojibake():
    data = ("\n".join(TRADITIONAL) + "\n").encode("big5")
    data.decode("gb18030")  # GB18030 accepts every byte of it: only the text tells
    result = parse(".jsonl", data)
    assert result.records == []
    assert result.file_error.reason == "uncertain_encoding"
    assert result.file_error.kind == "file"
    assert result.file_error.detail.startswith("as gb18030: ")
    assert "private-use character(s)" in result.file_error.detail
    assert result.file_error.detail.endswith("; re-export the file as UTF-8 (or list its encoding, e.g. big5, "
                                             "in ingest.encodings)")


def test_big5_listed_after_gb18030_is_detected():
    data = ("\n".join(TRADITIONAL) + "\n").encode("big5")
    result = parse_file(key=KEY + ".jsonl", data=data, kind="files", encodings=("utf-8", "gb18030", "big5"))
    assert result.encoding == "big5"
    assert [r["text"] for _, r in result.records] == ["本院認為，被告應當償還借款本金及利息。", "勞動合同糾紛，當事人雙方協商解決。"]


def test_gb18030_simplified_text_stays_plausible():
    text = '{"text": "本院认为，被告应当偿还借款本金及利息。《合同法》第一百零七条。"}\n'
    result = parse(".jsonl", text.encode("gb18030"))
    assert (result.encoding, result.file_error) == ("gb18030", None)


def test_hash_in_a_file_name_keeps_a_whole_file_rejection_a_file():
    from pipelines.ingest.parse import is_record

    result = parse_file(key="landing/legal/2024-06-03/a#L5.csv", data=b"colour\nred\n", kind="files",
                        encodings=ENCODINGS)
    assert result.file_error.source_uri == "landing/legal/2024-06-03/a#L5.csv"
    assert (result.file_error.kind, result.file_error.is_file) == ("file", True)
    assert result.file_error.to_dict()["kind"] == "file"
    assert is_record(result.file_error.to_dict()) is False
    lines = parse_file(key="landing/legal/2024-06-03/a#1.jsonl", data=b"{bad\n", kind="files", encodings=ENCODINGS)
    assert [(r.source_uri, r.kind) for r in lines.rejections] == [("landing/legal/2024-06-03/a#1.jsonl#L1", "record")]
    # Quarantine written before rejections carried their kind: read from the URI.
    assert is_record({"source_uri": "landing/legal/2024-06-03/a#1.csv"}) is False
    assert is_record({"source_uri": "landing/legal/2024-06-03/a.csv#L3"}) is True


def test_jsonl_nesting_the_parser_accepts_but_ingest_could_not_wrap_is_too_deeply_nested():
    from pipelines.ingest.parse import MAX_JSON_DEPTH

    deep = '{"text": "a", "id": ' + "[" * 990 + "]" * 990 + "}"
    ok = '{"text": "b", "id": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    result = parse(".jsonl", f"{deep}\n{ok}\nnull\n".encode())
    assert [n for n, _ in result.records] == [2]
    assert reasons(result) == [(f"{KEY}.jsonl#L1", "too_deeply_nested"), (f"{KEY}.jsonl#L3", "not_an_object")]
    assert result.rejections[0].detail == f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
