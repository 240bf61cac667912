"""Folding, word-list parsing, lexicon loading, digest and pickling of ``pipelines.sensitive.wordlist``."""

from __future__ import annotations

import hashlib
import json
import pickle
import unicodedata

import pytest

from pipelines.sensitive import Lexicon, LexiconError, find_matches, fold, load_lexicon, parse_word_list
from pipelines.sensitive.wordlist import (
    BUNDLED_PATH,
    BUNDLED_VERSION,
    DEFAULT_EXTENSION,
    MATCHING_VERSION,
    automaton_key,
    bundled_words,
    byte_offsets,
    default_lexicon,
    fold_char,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("Ponzi SCHEME", "ponzi scheme"),
    ("ＰＯＮＺＩ　ｓｃｈｅｍｅ", "ponzi scheme"),     # full-width letters and ideographic space
    ("ﬁne", "fine"),                                 # ligature
    ("㈱公司", "(株)公司"),                          # one character folds to three
    ("合同，已终止。", "合同,已终止。"),             # full-width comma folds, 。 does not
    ("ΟΔΟΣ", "οδοσ"),                                # final sigma folds to plain sigma
    ("İ", "i\u0307"),                                # lower case may lengthen
    ("𝐀𝐁c", "abc"),                                  # astral compatibility forms
    ("😀杀猪盘", "😀杀猪盘"),                        # astral character without a compatibility form
    ("", ""),
])
def test_fold(text, expected):
    assert fold(text) == expected


@pytest.mark.parametrize("text", ["ΟΔΟΣ ΟΔΟΣ", "Ａb㈱İ😀𝐀ﬁ，。Σ", "e\u0301", "plain", "合同，已终止"])
def test_fold_is_fold_char_of_every_character(text):
    assert fold(text) == "".join(fold_char(c) for c in text)
    offsets = byte_offsets(text)
    assert len(offsets) == len(text) + 1
    assert offsets[-1] == len(automaton_key(fold(text)))


def test_fold_agrees_with_nfkc_lower_on_text_without_combining_sequences():
    text = "ＡＢＣ合同，（甲方）ﬁle ㈱ Straße"
    assert fold(text) == unicodedata.normalize("NFKC", text).lower()


WORDS = (
    "\ufeff# a comment\n"
    "\n"
    "杀猪盘\tfraud\r\n"
    "  ponzi scheme \t fraud \n"
    "   # indented comment\n"
    "meth\n"
    "c#\tgeneral\n"
    "!微信\n"
    "! 奸 \n"
)


def test_parse_word_list():
    parsed = parse_word_list(WORDS.encode("utf-8"), path="words.txt")
    assert parsed.entries == (("杀猪盘", "fraud", 3), ("ponzi scheme", "fraud", 4), ("meth", "general", 6),
                              ("c#", "general", 7))
    assert parsed.exclusions == (("微信", 8), ("奸", 9))


@pytest.mark.parametrize(("data", "message"), [
    (b"ok\nbad\tfraud\tdrugs\n", "words.txt:2: more than one tab"),
    (b"ok\n\n\tfraud\n", "words.txt:3: empty entry before the tab"),
    (b"ok\tFraud\n", "words.txt:1: category 'Fraud' must match"),
    (b"ok\tfraud-x\n", "words.txt:1: category 'fraud-x' must match"),
    (b"ok\n\xe6\x9d\x80\xff\n", "words.txt:2: not UTF-8"),
    (b"!x\tfraud\n", "words.txt:1: an exclusion ('!entry') takes no category"),
    (b"!\n", "words.txt:1: '!' must be followed by the entry"),
    ("Scam\tfraud\n# x\nＳＣＡＭ\tgeneral\n".encode(), "words.txt:3: entry 'ＳＣＡＭ' has category 'general' here and "
                                                    "'fraud' on line 1"),
])
def test_parse_word_list_names_file_and_line(data, message):
    with pytest.raises(LexiconError) as info:
        parse_word_list(data, path="words.txt")
    assert str(info.value).startswith(message)


def test_same_entry_twice_with_one_category_is_accepted():
    assert parse_word_list("scam\tfraud\nSCAM\tfraud\n".encode(), path="w").entries == (
        ("scam", "fraud", 1), ("SCAM", "fraud", 2))


def test_bundled_list_shape():
    data = json.loads(BUNDLED_PATH.read_text(encoding="utf-8"))
    assert sorted(data) == ["badwords", "whitelist"]
    words = bundled_words()
    assert len(words) == 249 == len(set(words))
    assert len({fold(w) for w in words}) == 246  # 'JB'/'jb', 'VX9'/'Vx9', 'RI你'/'ri你'
    assert hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest() == \
        "0b2340fe8ec1915ff690f91ea53ad3df32c499577241f8decd11614fa80e3611"  # as in lexicon/NOTICE


def test_bundled_only():
    lexicon = load_lexicon(extensions=())
    assert len(lexicon) == 246
    assert lexicon.categories == ("general",)
    assert lexicon.sources == (BUNDLED_VERSION,)


def test_load_lexicon_overrides_and_exclusions(tmp_path):
    first = tmp_path / "a.txt"
    first.write_text("微信\tspam\n杀猪盘\tfraud\n", encoding="utf-8")
    second = tmp_path / "b.txt"
    second.write_text("杀猪盘\tscam\n!sao\n", encoding="utf-8")
    lexicon = load_lexicon(extensions=(first, second))
    entries = dict(lexicon.entries)
    assert entries["微信"] == "spam"          # overrides the bundled 'general'
    assert entries["杀猪盘"] == "scam"        # the later file wins
    assert "sao" not in entries
    assert len(lexicon) == 246 + 1 - 1
    assert lexicon.sources == (BUNDLED_VERSION, str(first), str(second))


def test_exclusion_of_an_entry_no_list_adds(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("# x\n!不存在的词\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"w\.txt:2: '!不存在的词' excludes an entry that no list adds"):
        load_lexicon(extensions=(path,))


def test_missing_word_list(tmp_path):
    with pytest.raises(LexiconError, match=r"nope\.txt: cannot read the word list"):
        load_lexicon(extensions=(tmp_path / "nope.txt",), bundled=False)


def test_default_lexicon_is_bundled_plus_project_list():
    lexicon = default_lexicon()
    assert default_lexicon() is lexicon
    assert lexicon.sources == (BUNDLED_VERSION, "config/sensitive_words.txt")
    parsed = parse_word_list(DEFAULT_EXTENSION.read_bytes(), path="config/sensitive_words.txt")
    entries = dict(lexicon.entries)
    assert all(entries[fold(w)] == c for w, c, _ in parsed.entries)
    assert not any(fold(w) in entries for w, _ in parsed.exclusions)
    assert len(lexicon) == 246 - len(parsed.exclusions) + len(parsed.entries)


def test_digest_is_pinned_and_independent_of_order_and_spelling():
    a = Lexicon.from_entries([("杀猪盘", "fraud"), "Ponzi"])
    b = Lexicon.from_entries(["ｐｏｎｚｉ", ("杀猪盘", "fraud"), "PONZI"])
    lines = f"{MATCHING_VERSION}\nponzi\tgeneral\n杀猪盘\tfraud\n".encode()
    assert a.entries == (("ponzi", "general"), ("杀猪盘", "fraud"))
    assert a.digest == b.digest == hashlib.sha256(lines).hexdigest()
    assert a.digest == "a7e45153d7c02ff01c736f54222a136ffd797548a8cb1d16118b9fcc9b9e5096"
    assert Lexicon.from_entries([("杀猪盘", "scam"), "Ponzi"]).digest != a.digest


def test_from_entries_rejects_two_categories_and_bad_ones():
    with pytest.raises(LexiconError, match="two categories"):
        Lexicon.from_entries([("scam", "fraud"), ("SCAM", "general")])
    with pytest.raises(LexiconError, match="category 'Fraud'"):
        Lexicon.from_entries([("scam", "Fraud")])
    with pytest.raises(LexiconError, match="empty after folding"):
        Lexicon.from_entries(["  "])
    with pytest.raises(LexiconError, match="holds a tab or a line break"):
        Lexicon.from_entries(["a\tb"])
    with pytest.raises(LexiconError, match=r"use a string or an \(entry, category\) pair"):
        Lexicon.from_entries([("scam", "fraud", "x")])
    with pytest.raises(LexiconError, match="sorted and unique"):
        Lexicon(entries=(("b", "general"), ("a", "general")))


def test_empty_lexicon():
    lexicon = Lexicon.from_entries([])
    assert len(lexicon) == 0
    assert lexicon.automaton is None
    assert lexicon.digest == hashlib.sha256(f"{MATCHING_VERSION}\n".encode()).hexdigest()
    assert find_matches("杀猪盘", lexicon=lexicon) == ()


def test_pickle_keeps_the_built_automaton():
    lexicon = Lexicon.from_entries([("杀猪盘", "fraud"), "ponzi"])
    lexicon.automaton  # noqa: B018
    copy = pickle.loads(pickle.dumps(lexicon))
    assert "automaton" in copy.__dict__
    assert copy == lexicon and copy.digest == lexicon.digest
    assert find_matches("a Ponzi 杀猪盘", lexicon=copy) == find_matches("a Ponzi 杀猪盘", lexicon=lexicon) \
        == ((2, 7, "general"), (8, 11, "fraud"))


def test_repr_never_shows_entries():
    lexicon = Lexicon.from_entries([("杀猪盘", "fraud")])
    assert "杀猪盘" not in repr(lexicon)
    assert repr(lexicon).startswith("Lexicon(1 entries, digest=")
