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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.clean.text import detect_language, strip_html, strip_invisible
from pipelines.config import LANGUAGES, ConfigError
from pipelines.ingest.parse import RAW_SNIPPET, Rejection

__all__ = ["CleanConfig", "CleanResult", "clean_records", "clean_text", "detect_language",
           "strip_html", "strip_invisible"]

STAGE = "clean"
TEXT_FIELDS = ("question", "answer", "correction")  # cleaned like ``text`` when present
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Escapes a replacement template may use: group references and the escapes re.sub expands.
_TEMPLATE_ESCAPE = re.compile(r"\\(?:g<([^>]*)>|([0-9]{1,2})|(.)|$)", re.DOTALL)


@dataclass(frozen=True)
class CleanConfig:
    """What ``clean_records`` removes, rewrites and drops.

    Attributes:
        min_chars: Fewest characters (leading/trailing whitespace not counted) a cleaned text keeps.
        max_chars: Most characters a cleaned text may have.
        strip_html: Remove HTML markup and unescape entities.
        strip_control: Remove control characters (except tab and line feed) and zero-width characters.
        drop_patterns: ``(name, regex)`` pairs: a record whose cleaned text matches is dropped with
            reason ``clean.pattern.<name>``. Checked in order; the first match decides.
        replace_patterns: ``(name, regex, replacement)`` triples applied in order with ``re.sub``
            (the replacement may use ``\\1`` / ``\\g<name>``).
        allowed_languages: Languages kept (``zh``, ``en``, ``other``); empty keeps any.
    """

    min_chars: int = 2
    max_chars: int = 20000
    strip_html: bool = True
    strip_control: bool = True
    drop_patterns: tuple[tuple[str, str], ...] = ()
    replace_patterns: tuple[tuple[str, str, str], ...] = ()
    allowed_languages: tuple[str, ...] = ()
    _drop: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)
    _replace: tuple[tuple[re.Pattern[str], str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("min_chars", "max_chars"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ConfigError(f"clean.{name}={getattr(self, name)!r}: use an integer")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ConfigError(f"clean: need 1 <= min_chars ({self.min_chars}) <= max_chars ({self.max_chars})")
        drop = tuple(_compile("drop_patterns", entry, 2) for entry in self.drop_patterns)
        replace = tuple(_compile("replace_patterns", entry, 3) for entry in self.replace_patterns)
        for key, names in (("drop_patterns", [d[0] for d in drop]), ("replace_patterns", [r[0] for r in replace])):
            if len(set(names)) != len(names):
                raise ConfigError(f"clean.{key}: duplicate names in {names}; each rule needs its own name")
        for (name, pattern, replacement) in replace:
            _check_template(name, pattern, replacement)
        unknown = sorted(set(self.allowed_languages) - set(LANGUAGES))
        if unknown:
            raise ConfigError(f"clean.allowed_languages: unknown {unknown}; use {list(LANGUAGES)} or [] for any")
        # Normalized to tuples (YAML gives lists) and compiled once; the dataclass stays frozen.
        object.__setattr__(self, "drop_patterns", tuple((n, p.pattern) for n, p in drop))
        object.__setattr__(self, "replace_patterns", tuple((n, p.pattern, r) for n, p, r in replace))
        object.__setattr__(self, "allowed_languages", tuple(self.allowed_languages))
        object.__setattr__(self, "_drop", drop)
        object.__setattr__(self, "_replace", tuple((p, r) for _, p, r in replace))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CleanConfig:
        """Build from a YAML mapping.

        Patterns may be written as lists (``[name, regex]``, ``[name, regex, replacement]``) or as
        mappings (``{name: ..., regex: ..., replacement: ...}``)::

            clean:
              min_chars: 20
              drop_patterns:
                - {name: lorem, regex: "(?i)lorem ipsum"}
              replace_patterns:
                - [nbsp_run, "\\u00a0+", " "]
              allowed_languages: [zh, en]

        Raises:
            ConfigError: on an unknown key or an invalid value; the message names it.
        """
        values = dict(values or {})
        known = [f for f in cls.__dataclass_fields__ if not f.startswith("_")]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"clean: unknown key(s) {unknown}; known: {known}")
        for key, fields in (("drop_patterns", ("name", "regex")),
                            ("replace_patterns", ("name", "regex", "replacement"))):
            if key in values:
                values[key] = tuple(_entry(key, i, e, fields) for i, e in enumerate(values[key] or ()))
        if "allowed_languages" in values:
            values["allowed_languages"] = tuple(values["allowed_languages"] or ())
        return cls(**values)


def _entry(key: str, index: int, entry: object, fields: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(entry, Mapping):
        missing = [f for f in fields if f not in entry]
        extra = sorted(set(entry) - set(fields))
        if missing or extra:
            raise ConfigError(f"clean.{key}[{index}]: need exactly the keys {list(fields)}"
                              f" (missing {missing}, unknown {extra})")
        return tuple(entry[f] for f in fields)
    if isinstance(entry, Sequence) and not isinstance(entry, str):
        return tuple(entry)
    raise ConfigError(f"clean.{key}[{index}]: use a list {list(fields)} or a mapping with those keys")


def _compile(key: str, entry: object, size: int) -> tuple:
    shape = "(name, regex)" if size == 2 else "(name, regex, replacement)"
    if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != size \
            or not all(isinstance(part, str) for part in entry):
        raise ConfigError(f"clean.{key}: {entry!r} is not a {shape} tuple of strings")
    name, regex = entry[0], entry[1]
    if not _RULE_NAME.match(name):
        raise ConfigError(f"clean.{key}: name {name!r} must match {_RULE_NAME.pattern} (it becomes a reason)")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"clean.{key}[{name}]: regex {regex!r} does not compile: {exc}") from None
    return (name, pattern, *entry[2:])


def _check_template(name: str, pattern: re.Pattern[str], replacement: str) -> None:
    """Fail now, not on the first matching record, on a replacement that ``re.sub`` would reject."""
    for match in _TEMPLATE_ESCAPE.finditer(replacement):
        group_name, number, other = match.groups()
        problem = None
        if group_name is not None:
            ok = group_name in pattern.groupindex or (group_name.isdigit() and int(group_name) <= pattern.groups)
            problem = None if ok else f"unknown group \\g<{group_name}>"
        elif number is not None:
            problem = None if number == "0" or int(number) <= pattern.groups else f"unknown group \\{number}"
        elif other is None:
            problem = "trailing backslash"
        elif other.isascii() and other.isalpha() and other not in "abfnrtv":
            problem = f"bad escape \\{other}"
        if problem:
            raise ConfigError(f"clean.replace_patterns[{name}]: replacement {replacement!r}: {problem}"
                              " (write \\\\ for a literal backslash)")


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
