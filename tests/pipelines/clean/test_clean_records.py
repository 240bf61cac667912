"""clean_records on tiny inline partitions: exact surviving ids, drop reasons, counts, rule order."""

from __future__ import annotations

import json

from pipelines.clean import CleanConfig, clean_records
from pipelines.ingest.parse import Rejection

KEY = "landing/legal/2024-06-03/a.jsonl"


def row(n: int, text: str | None, **extra) -> dict:
    return {"id": f"r{n}", "domain": "legal", "text": text, "source_uri": f"{KEY}#L{n}", "language": "en",
            **extra}


def reasons(result) -> list[tuple[str, str]]:
    return [(r.source_uri.rsplit("#L", 1)[1], r.reason) for r in result.rejections]


def test_each_rule_drops_with_its_reason():
    config = CleanConfig(min_chars=3, max_chars=40, drop_patterns=(("lorem", r"(?i)lorem ipsum"),),
                         allowed_languages=("en", "zh"))
    rows = [
        row(1, "The lease ends in May."),
        row(2, "ok"),                                   # 2 chars
        row(3, "<p></p><br/>\u200b"),                   # markup only
        row(4, "x" * 41),
        row(5, "Lorem Ipsum dolor sit amet"),
        row(6, "Договор расторгнут"),                   # Russian
        row(7, "合同已终止"),
        row(8, "   \n"),                                # blank from the start
        row(9, None),                                   # no text at all
    ]
    result = clean_records(rows, config=config)
    assert [r["id"] for r in result.rows] == ["r1", "r7"]
    assert reasons(result) == [("2", "clean.too_short"), ("3", "clean.empty_after_cleaning"),
                               ("4", "clean.too_long"), ("5", "clean.pattern.lorem"),
                               ("6", "clean.language.other"), ("8", "clean.too_short"), ("9", "clean.too_short")]
    assert result.counts == {"in": 9, "kept": 2, "clean.too_short": 3, "clean.empty_after_cleaning": 1,
                             "clean.too_long": 1, "clean.pattern.lorem": 1, "clean.language.other": 1}


def test_rejection_carries_stage_detail_and_the_raw_row():
    config = CleanConfig(min_chars=5, max_chars=10, drop_patterns=(("secret", r"SECRET"),),
                         allowed_languages=("zh",))
    result = clean_records([row(1, "abc"), row(2, "a" * 11), row(3, "SECRET x"), row(4, "hello"),
                            row(5, "<b></b>")], config=config)
    assert result.rejections[0] == Rejection(
        f"{KEY}#L1", "clean", "clean.too_short", "3 characters after cleaning; min_chars is 5",
        json.dumps(row(1, "abc"), ensure_ascii=False))
    assert [r.detail for r in result.rejections[1:]] == [
        "11 characters after cleaning; max_chars is 10",
        "text matches drop pattern 'secret'",
        "detected 'en'; allowed ['zh']",
        "nothing is left after cleaning",
    ]
    assert {r.stage for r in result.rejections} == {"clean"}


def test_kept_rows_are_new_dicts_with_cleaned_fields_and_recomputed_language():
    rows = [row(1, "<p>合同&nbsp;已终止\u200b</p>", language="en", content_sha256="ab" * 32),
            row(2, "Q?\nA<br>ok", question="<b>Q?</b>", answer="A<br>ok\x00", correction=None, rating=5)]
    original = json.loads(json.dumps(rows))
    result = clean_records(rows, config=CleanConfig())
    assert result.rows == (
        {"id": "r1", "domain": "legal", "text": "\n合同\xa0已终止\n", "source_uri": f"{KEY}#L1", "language": "zh",
         "content_sha256": "ab" * 32},
        {"id": "r2", "domain": "legal", "text": "Q?\nA\nok", "source_uri": f"{KEY}#L2", "language": "en",
         "question": "Q?", "answer": "A\nok", "correction": None, "rating": 5},
    )
    assert rows == original  # inputs untouched
    assert result.counts == {"in": 2, "kept": 2}


def test_length_is_measured_on_the_cleaned_text_without_outer_whitespace():
    config = CleanConfig(min_chars=5, max_chars=6)
    result = clean_records([row(1, "  abcd  "), row(2, " abcde "), row(3, "<i>abcdef</i>"),
                            row(4, "abcdef\u200b\u200b"), row(5, "<i>abcdefg</i>")], config=config)
    assert [(r["id"], r["text"]) for r in result.rows] == [("r2", " abcde "), ("r3", "abcdef"), ("r4", "abcdef")]
    assert reasons(result) == [("1", "clean.too_short"), ("5", "clean.too_long")]


def test_rule_order_first_applicable_rule_decides():
    config = CleanConfig(
        min_chars=4,
        replace_patterns=(("secret", r"SECRET-\d+", "[REDACTED]"),),
        drop_patterns=(("redacted", r"\[REDACTED\]"), ("todo", "TODO"), ("any_todo", "(?i)todo")),
        allowed_languages=("en",),
    )
    result = clean_records([
        row(1, "TODO"),                     # exactly min_chars: the patterns decide
        row(2, "TOD"),                      # too short beats the patterns
        row(3, "key SECRET-123 TODO"),      # replacement runs before drop patterns; first pattern wins
        row(4, "todo: 合同已终止"),           # pattern beats language
        row(5, "合同已终止 done"),            # only the language rule applies
        row(6, "<b>TO</b>DO"),               # patterns see the cleaned text
    ], config=config)
    assert reasons(result) == [("1", "clean.pattern.todo"), ("2", "clean.too_short"), ("3", "clean.pattern.redacted"),
                               ("4", "clean.pattern.any_todo"), ("5", "clean.language.zh"), ("6", "clean.pattern.todo")]
    assert result.rows == ()
    assert result.counts == {"in": 6, "kept": 0, "clean.pattern.todo": 2, "clean.too_short": 1,
                             "clean.pattern.redacted": 1, "clean.pattern.any_todo": 1, "clean.language.zh": 1}


def test_empty_partition():
    result = clean_records([], config=CleanConfig())
    assert (result.rows, result.rejections, result.counts) == ((), (), {"in": 0, "kept": 0})
