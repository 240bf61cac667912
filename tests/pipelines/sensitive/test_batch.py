"""The batch matcher finds exactly what the per-text scan finds, text by text."""

from __future__ import annotations

import pickle
import random

from pipelines.sensitive import Lexicon, SensitiveConfig, filter_records
from pipelines.sensitive import _scan
from pipelines.sensitive.batch import BatchMatcher

WORDS = [("ab", "general"), ("abc", "fraud"), ("bcd", "drugs"), ("赌博", "gambling"), ("赌博网", "gambling"),
         ("毒品", "drugs"), ("x1", "general"), ("cd e", "general"), ("ä", "general"), ("网站", "fraud")]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("abcdex1 ,.-") + list("赌博网站毒品的是") + ["Ä", "Ａ", "ＢＣ", "\t", "\u00a0"]
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(count)]


def test_batch_scan_equals_per_text_scan_on_random_texts():
    lexicon = Lexicon.from_entries(WORDS)
    texts = random_texts(3000, seed=11)
    batch = lexicon.batch_matcher.scan(texts)
    expected = [_scan(t, lexicon.automaton) for t in texts]
    assert batch == expected
    assert sum(1 for spans in expected if spans) > 1000  # the texts really exercise matching


def test_word_boundaries_and_leftmost_longest():
    lexicon = Lexicon.from_entries(WORDS)
    texts = ["abc", "xabc", "abcd", "ab abc", "赌博网站", "cd e", "ABC!", ""]
    assert lexicon.batch_matcher.scan(texts) == [
        [(0, 3, "fraud")], [], [], [(0, 2, "general"), (3, 6, "fraud")],
        [(0, 9, "gambling")], [(0, 4, "general")], [(0, 3, "fraud")], []]


def test_chunks_split_the_buffer_without_changing_results(monkeypatch):
    import pipelines.sensitive.batch as batch

    lexicon = Lexicon.from_entries(WORDS)
    texts = random_texts(500, seed=3)
    whole = lexicon.batch_matcher.scan(texts)
    monkeypatch.setattr(batch, "CHUNK_BYTES", 64)
    assert BatchMatcher(lexicon.entries).scan(texts) == whole


def test_filter_records_uses_the_batch_path_with_the_same_outcome():
    lexicon = Lexicon.from_entries(WORDS)
    rows = [{"id": str(i), "domain": "legal", "source_uri": f"s3://b/k#{i}", "text": t}
            for i, t in enumerate(random_texts(400, seed=5))]
    result = filter_records(rows, lexicon=lexicon, policy=SensitiveConfig(default="flag"))
    expected = {r["id"]: tuple(sorted({c for _, _, c in _scan(r["text"], lexicon.automaton)}))
                for r in rows if _scan(r["text"], lexicon.automaton)}
    assert result.flagged == expected


def test_lexicon_pickles_without_the_batch_matcher():
    lexicon = Lexicon.from_entries(WORDS)
    lexicon.batch_matcher  # built
    copy = pickle.loads(pickle.dumps(lexicon))
    assert "batch_matcher" not in copy.__dict__
    assert copy.batch_matcher.scan(["abc"]) == [[(0, 3, "fraud")]]


# ------------------------------------------------------------------ compiled scanner and fallback
import importlib  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402

import pytest  # noqa: E402

batch_module = importlib.import_module("pipelines.sensitive.batch")


@pytest.fixture(params=["compiled", "python"])
def implementation(request, monkeypatch):
    """Run a test with the compiled scanner and with the Aho-Corasick fallback."""
    if request.param == "compiled" and batch_module._fastscan is None:
        if os.environ.get("CI"):
            pytest.fail("CI builds the compiled scanner (scripts/bootstrap.sh); it does not import")
        pytest.skip("compiled scanner not built (python -m pipelines.native)")
    if request.param == "python":
        monkeypatch.setattr(batch_module, "_fastscan", None)
    return request.param


def random_lexicon(rng: random.Random) -> list[tuple[str, str]]:
    """Entries of every class the scanner tells apart: word bytes only, short and long others, CJK,
    Latin-1 and astral characters, leading/trailing punctuation and spaces."""
    pieces = list("abcx1") + ["赌", "博", "网", "ä", "é", "🙂", " ", "-", ".", "[", "q"]
    words = set()
    while len(words) < 300:
        word = "".join(rng.choices(pieces, k=rng.randint(1, 8))).strip()
        if word:
            words.add(word)
    return [(w, rng.choice(["general", "fraud", "drugs"])) for w in sorted(words)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("punctuation_first", [True, False])
def test_scan_equals_per_text_scan_on_a_random_lexicon(implementation, seed, punctuation_first):
    """With entries that start with ASCII punctuation the compiled scan goes byte by byte; without,
    16 bytes at a time (where SSE2 exists): both must find what the per-text scan finds."""
    rng = random.Random(seed)
    entries = random_lexicon(rng)
    if not punctuation_first:
        entries = [(w, c) for w, c in entries if w[0] not in " -.[q" or w[0].isalnum()]
    lexicon = Lexicon.from_entries(entries)
    matcher = BatchMatcher(lexicon.entries)
    if implementation == "compiled" and platform.machine() in ("x86_64", "AMD64"):
        assert matcher._scanner.vectorized is (not punctuation_first)
    alphabet = list("abcx1 -.[q") + ["赌", "博", "网", "ä", "Ä", "é", "🙂", "Ａ", "\t", "\u00a0", "的", "，", "Σ", "İ",
                                       "ﬁ", "㎏", "Ｘ", "ς", "\u0301"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(2000)]
    texts += ["abc1 " * rng.randint(1, 20) + "x" * rng.randint(0, 40) for _ in range(200)]  # runs across 16-byte blocks
    assert matcher.scan(texts) == [_scan(t, lexicon.automaton) for t in texts]


def test_scan_fixed_cases_both_implementations(implementation):
    lexicon = Lexicon.from_entries(WORDS)
    texts = ["abc", "xabc", "abcd", "ab abc", "赌博网站", "cd e", "ABC!", "", "abc" * 30 + " abc", "赌博" * 50]
    assert BatchMatcher(lexicon.entries).scan(texts) == [_scan(t, lexicon.automaton) for t in texts]


def test_compiled_scanner_refuses_bad_input(implementation):
    lexicon = Lexicon.from_entries(WORDS)
    with pytest.raises(TypeError, match="item 1"):
        BatchMatcher(lexicon.entries).scan(["ok", b"bytes"])
