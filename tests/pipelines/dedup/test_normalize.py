"""normalize / content_hash / content_hashes: NFKC, whitespace folding, and the batch fast path's equivalence."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.dedup.normalize import _python_hashes, content_hash, content_hashes, normalize


@pytest.mark.parametrize(("text", "expected"), [
    ("ＡＢＣ１２３", "ABC123"),                       # full-width -> ASCII
    ("ﬁle", "file"),                                 # compatibility ligature
    ("e\u0301", "\u00e9"),                           # composed
    ("a\tb\nc\r\nd", "a b c d"),                     # tabs, newlines
    ("a\u00a0b", "a b"),                             # NBSP
    ("a\u3000b", "a b"),                             # ideographic space
    ("  lead and trail \n", "lead and trail"),
    ("a  \t \u3000 b", "a b"),                       # a run of mixed whitespace is one space
    ("Mixed CASE Kept", "Mixed CASE Kept"),
    ("合同\u3000已终止", "合同 已终止"),
    ("", ""),
    (" \t\n", ""),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_content_hash_is_sha256_of_normalized_utf8():
    assert content_hash("  ＡＢＣ\tdef ") == hashlib.sha256(b"ABC def").digest()
    assert content_hash("abc") != content_hash("ABC")
    assert len(content_hash("abc")) == 32


TEXTS = [
    "plain ascii text",
    "  leading spaces",
    "trailing spaces  ",
    "double  inner space",
    "tab\tinside",
    "合同已终止",
    "ＦＵＬＬ ｗｉｄｔｈ",
    "",
    "line\nbreak",
    "plain ascii text",
]


@pytest.mark.parametrize("chunk", [1, 3, 4, 8192])
def test_python_batch_equals_content_hash_per_text(chunk):
    assert len(TEXTS) == 10
    assert _python_hashes(TEXTS, chunk=chunk) == [content_hash(t) for t in TEXTS]
    assert content_hashes(TEXTS) == [content_hash(t) for t in TEXTS]


def test_content_hashes_fast_path_only_chunk_and_edge_cases():
    # A chunk where every text is already normalized ASCII takes the all-fast branch.
    texts = ["a b", "c", "x y z", " d", "e\x1ff", "g\x7fh", "\u00a0i"]
    assert _python_hashes(texts, chunk=3) == [content_hash(t) for t in texts]
    assert content_hashes(texts) == [content_hash(t) for t in texts]
    assert content_hashes([]) == []
    assert content_hashes([""]) == [hashlib.sha256(b"").digest()]


def test_equivalent_texts_hash_equal():
    hashes = content_hashes(["Hello World", " Hello\u3000World\n", "Ｈｅｌｌｏ  World", "hello world"])
    assert hashes[0] == hashes[1] == hashes[2]
    assert hashes[3] != hashes[0]


def test_pii_token_numbers_do_not_change_the_hash():
    from pipelines.dedup.normalize import content_hash, content_hashes, strip_token_numbers

    a, b = "Call [PHONE_1] or mail [EMAIL_3]", "Call [PHONE_2] or mail [EMAIL_1]"
    assert strip_token_numbers(a) == "Call [PHONE] or mail [EMAIL]"
    assert content_hash(a) == content_hash(b)
    assert content_hashes([a, b]) == [content_hash(a)] * 2
    assert content_hash("[NOTATOKEN_1] x") != content_hash("[NOTATOKEN_2] x")
