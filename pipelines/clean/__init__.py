"""Clean curated records: strip markup and invisible characters, rewrite and drop by rule.

``clean_records`` keeps records in input order. Each record is judged by these rules, in this
order; the first that applies drops it (with ``stage="clean"`` and the reason shown):

1. ``text`` is cleaned with ``clean_text``: HTML (``strip_html``), then control and zero-width
   characters (``strip_control``), then every ``replace_patterns`` entry in config order.
   ``question``, ``answer`` and ``correction`` are cleaned the same way when they are strings.
2. The cleaned text is blank although the raw text was not -> ``clean.empty_after_cleaning``.
3. Its length without leading/trailing whitespace is below ``min_chars`` -> ``clean.too_short``
   (a blank raw text ends here), or above ``max_chars`` -> ``clean.too_long``.
4. The first ``drop_patterns`` entry, in config order, that the cleaned text matches
   (``re.search``) -> ``clean.pattern.<name>``.
5. ``language`` is recomputed from the cleaned text (``detect_language``); when
   ``allowed_languages`` is set and does not hold it -> ``clean.language.<lang>``.

Kept records are new dicts; ``content_sha256`` is left as it is (it identifies the content dedup
saw). No rule looks at ``language`` as it came in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.clean.text import detect_language, strip_html, strip_invisible
from pipelines.config.governance import CleanConfig  # the governance.clean section (validated at load)
from pipelines.ingest.parse import RAW_SNIPPET, Rejection

__all__ = ["CleanConfig", "CleanResult", "clean_records", "clean_text", "detect_language",
           "strip_html", "strip_invisible"]

STAGE = "clean"
TEXT_FIELDS = ("question", "answer", "correction")  # cleaned like ``text`` when present
@dataclass(frozen=True)
class CleanResult:
    """What ``clean_records`` kept and dropped.

    Attributes:
        rows: Kept records, in input order: new dicts with cleaned text fields and ``language``.
        rejections: Dropped records, in input order, with ``stage="clean"`` and the rule's reason.
        counts: ``"in"``, ``"kept"``, and the number of records dropped per reason (reasons that
            dropped nothing are absent).
    """

    rows: tuple[dict, ...]
    rejections: tuple[Rejection, ...]
    counts: dict[str, int]


def clean_text(text: str, config: CleanConfig) -> str:
    """Clean one text: HTML, then control and zero-width characters, then the replace patterns.

    Args:
        text: the text to clean.
        config: which steps apply, and the replace patterns (in order).

    Returns:
        The cleaned text; everything not removed or replaced is kept as it was (whitespace too).
    """
    if config.strip_html:
        text = strip_html(text)
    if config.strip_control:
        text = strip_invisible(text)
    for pattern, replacement in config._replace:
        text = pattern.sub(replacement, text)
    return text


def _judge(raw: str, text: str, config: CleanConfig) -> tuple[str | None, str, str]:
    """``(reason, detail, language)`` of the first rule that drops ``text``, or ``(None, None, language)``."""
    stripped = text.strip()
    if not stripped and raw.strip():
        return "clean.empty_after_cleaning", "nothing is left after cleaning", "other"
    n = len(stripped)
    if n < config.min_chars:
        return "clean.too_short", f"{n} characters after cleaning; min_chars is {config.min_chars}", "other"
    if n > config.max_chars:
        return "clean.too_long", f"{n} characters after cleaning; max_chars is {config.max_chars}", "other"
    for name, pattern in config._drop:
        if pattern.search(text):
            return f"clean.pattern.{name}", f"text matches drop pattern {name!r}", "other"
    language = detect_language(text)
    if config.allowed_languages and language not in config.allowed_languages:
        return (f"clean.language.{language}",
                f"detected {language!r}; allowed {list(config.allowed_languages)}", language)
    return None, "", language


def clean_records(rows: Iterable[dict], *, config: CleanConfig) -> CleanResult:
    """Clean records and drop those that fail a rule (the rules and their order: see the module doc).

    Args:
        rows: curated records (dicts with at least ``text``; ``source_uri`` names rejections).
        config: the cleaning rules.

    Returns:
        The kept records (new dicts), the rejections and the counts per reason.
    """
    kept: list[dict] = []
    rejections: list[Rejection] = []
    counts: dict[str, int] = {"in": 0, "kept": 0}
    for row in rows:
        counts["in"] += 1
        raw = row.get("text")
        raw = raw if isinstance(raw, str) else ""
        text = clean_text(raw, config)
        reason, detail, language = _judge(raw, text, config)
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            rejections.append(Rejection(str(row.get("source_uri") or row.get("id") or ""), STAGE, reason, detail,
                                        json.dumps(row, ensure_ascii=False, default=str)[:RAW_SNIPPET]))
            continue
        out = dict(row)
        out["text"] = text
        out["language"] = language
        for name in TEXT_FIELDS:
            value = out.get(name)
            if isinstance(value, str):
                out[name] = clean_text(value, config)
        kept.append(out)
    counts["kept"] = len(kept)
    return CleanResult(rows=tuple(kept), rejections=tuple(rejections), counts=counts)
