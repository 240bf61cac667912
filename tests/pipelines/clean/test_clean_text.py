"""clean_text and detect_language on tiny inline texts: exact outputs."""

from __future__ import annotations

import pytest

from pipelines.clean import CleanConfig, clean_text, detect_language

DEFAULT = CleanConfig()


@pytest.mark.parametrize("text, expected", [
    ("合同已终止", "zh"),
    ("The lease ends in May.", "en"),
    ("请用Python写一个function", "zh"),           # 7 ideographs of 21 letters
    ("This contract is governed by the law of 中国", "en"),  # 2 of 35
    ("中abcd", "zh"),                             # exactly 20%
    ("中abcde", "en"),                            # just below
    ("\u3400\u4db5 ext A", "zh"),                # extension A ideographs
    ("\uf900\ufa0e ok", "zh"),                   # compatibility ideographs
    ("\U00020000\U0002a6d6 ok", "zh"),           # extension B (supplementary plane)
    ("Привет, мир", "other"),
    ("12345 678 !!!", "other"),
    ("ab 12345678", "other"),                     # letters are not half of the characters
    ("", "other"),
    ("   \n", "other"),
])
def test_detect_language(text, expected):
    assert detect_language(text) == expected


@pytest.mark.parametrize("text, expected", [
    # Block tags become line breaks, inline tags vanish.
    ("<p>Hello <b>world</b></p><p>Bye</p>", "\nHello world\n\nBye\n"),
    ("line one<br/>line two<BR>three", "line one\nline two\nthree"),
    ('<a href="https://x.com/?a=1&amp;b=2" class=\'k\'>link</a> text', "link text"),
    # Script and style elements go with their contents; comments and doctype too.
    ("Hi<script type=\"text/javascript\">alert('<b>x</b>')</script><style>p{color:red}</style> there",
     "Hi there"),
    ("<!DOCTYPE html>a<!-- hidden <b>note</b> -->b", "ab"),
    # Entities are unescaped once, after tags: escaped markup stays as text.
    ("Tom &amp; Jerry &lt;3 &#20013;&#x6587;&nbsp;!", "Tom & Jerry <3 中文\xa0!"),
    ("&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"),
    # Not markup: comparisons, placeholders, unterminated entities.
    ("if x < 3 and y > 2 then", "if x < 3 and y > 2 then"),
    ("Dear <name>, see <<here>>", "Dear <name>, see <<here>>"),
    ("https://x.com/?a=1&copy=2 AT&T R&D", "https://x.com/?a=1&copy=2 AT&T R&D"),
])
def test_html_is_stripped(text, expected):
    assert clean_text(text, DEFAULT) == expected


@pytest.mark.parametrize("text, expected", [
    ("a\x00b\x1bc\x7fd\x85e\tf\ng", "abcde\tf\ng"),
    ("line1\r\nline2\rline3", "line1\nline2\nline3"),
    ("ze\u200bro\u200c\u200d\u2060\ufeffwidth", "zerowidth"),
    ("  spaces   and\n\n\nblank lines  ", "  spaces   and\n\n\nblank lines  "),  # whitespace kept
    ("全角　空格，emoji 👍🏽 and é", "全角　空格，emoji 👍🏽 and é"),
])
def test_control_and_zero_width_characters_are_removed(text, expected):
    assert clean_text(text, DEFAULT) == expected


def test_steps_can_be_switched_off():
    text = "<b>bold</b>\x00\u200b"
    assert clean_text(text, CleanConfig(strip_html=False)) == "<b>bold</b>"
    assert clean_text(text, CleanConfig(strip_control=False)) == "bold\x00\u200b"
    assert clean_text(text, CleanConfig(strip_html=False, strip_control=False)) == text


def test_replace_patterns_apply_in_order_after_html_and_control():
    config = CleanConfig(replace_patterns=(
        ("url", r"https?://\S+", "<URL>"),
        ("iso_date", r"(\d{4})-\d{2}-\d{2}", r"\1"),
        ("url_twice", r"<URL> <URL>", "<URLS>"),
    ))
    assert clean_text("see https://a.com/x and http://b.org on 2024-06-03", config) == "see <URL> and <URL> on 2024"
    assert clean_text("<i>https://a.com</i> <i>https://b.com</i>\u200b", config) == "<URLS>"


def test_full_width_english_is_english():
    from pipelines.clean import detect_language

    assert detect_language("Ｃａｌｌ ｓｕｍｍａｒｙ: Ｔｈｅ ｐｒｅｍｉｕｍ ｉｎｃｒｅａｓｅｄ ｂｙ １.５%") == "en"
    assert detect_language("合同ＡＢＣ条款") == "zh"
