"""Fast paths of the labeller that must not change what it predicts."""

from __future__ import annotations

from pipelines.label.batching import clip_words as _clip_words


def test_clip_words_keeps_the_first_words_and_ends_at_whitespace():
    assert _clip_words("One, two  three\nfour -- five six", 3) == "One, two  three"
    assert _clip_words("a b c d e f g h", 3) == "a b c"
    assert _clip_words("a -- b ... c d e f g h", 3) == "a -- b ... c"  # punctuation-only chunks do not count
    assert _clip_words("short", 3) == "short"
    assert _clip_words("a b", 3) == "a b"
