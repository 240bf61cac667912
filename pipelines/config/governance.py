"""The ``governance`` section's stage rules: cleaning (``clean``), PII masking (``pii``) and sensitive words
(``sensitive``). They sit here, below the stages that apply them, so ``load_config`` validates every domain's
effective rules when the file loads; ``pipelines.clean``, ``pipelines.pii`` and ``pipelines.sensitive``
re-export them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.config.base import ConfigError
from pipelines.config.core import LANGUAGES

PII_KINDS = ("email", "phone", "id", "card", "address")
POLICIES = ("drop", "mask", "flag")

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
class PiiConfig:
    """Which kinds of personal data are masked.

    Attributes:
        kinds: Kinds to mask, a non-empty subset of ``PII_KINDS`` (all by default).
    """

    kinds: tuple[str, ...] = PII_KINDS

    def __post_init__(self) -> None:
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        unknown = sorted(set(kinds) - set(PII_KINDS))
        if unknown:
            raise ConfigError(f"pii.kinds: unknown {unknown}; use a subset of {list(PII_KINDS)}")
        if not kinds:
            raise ConfigError(f"pii.kinds is empty: list the kinds to mask from {list(PII_KINDS)}"
                              " (leave the key out to mask all)")
        # Canonical order, so two configs listing the same kinds are equal.
        object.__setattr__(self, "kinds", tuple(k for k in PII_KINDS if k in kinds))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> PiiConfig:
        """Build from a YAML mapping such as ``{"kinds": ["email", "phone"]}``.

        Raises:
            ConfigError: on an unknown key or kind.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - {"kinds"})
        if unknown:
            raise ConfigError(f"pii: unknown key(s) {unknown}; known: ['kinds']")
        if "kinds" in values:
            values["kinds"] = tuple(values["kinds"] or ())
        return cls(**values)


@dataclass(frozen=True)
class SensitiveConfig:
    """What ``filter_records`` does with a record that holds a lexicon entry, per domain.

    Attributes:
        default: Policy (``drop``, ``mask`` or ``flag``) of domains not listed in ``domains``.
        domains: Policy per domain, as a mapping or ``(domain, policy)`` pairs (kept sorted pairs).
    """

    default: str = "flag"
    domains: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    _by_domain: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pairs = tuple(self.domains.items()) if isinstance(self.domains, Mapping) else tuple(self.domains)
        if self.default not in POLICIES:
            raise ConfigError(f"sensitive.default={self.default!r}: use one of {list(POLICIES)}")
        by_domain: dict[str, str] = {}
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) and pair[0]):
                raise ConfigError(f"sensitive.domains: {pair!r} is not a (domain, policy) pair")
            domain, policy = pair
            if policy not in POLICIES:
                raise ConfigError(f"sensitive.domains.{domain}={policy!r}: use one of {list(POLICIES)}")
            if domain in by_domain:
                raise ConfigError(f"sensitive.domains: {domain!r} is listed twice; keep one")
            by_domain[domain] = policy
        object.__setattr__(self, "domains", tuple(sorted(by_domain.items())))
        object.__setattr__(self, "_by_domain", by_domain)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> SensitiveConfig:
        """Build from a YAML mapping, e.g. ``{default: flag, domains: {product_reviews: mask}}``.

        Raises:
            ConfigError: on an unknown key or an invalid value; the message names it.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - {"default", "domains"})
        if unknown:
            raise ConfigError(f"sensitive: unknown key(s) {unknown}; known: ['default', 'domains']")
        domains = values.get("domains") or {}
        if not isinstance(domains, Mapping):
            raise ConfigError("sensitive.domains: use a mapping of domain -> policy")
        return cls(default=values.get("default", "flag"), domains=domains)

    def policy_for(self, domain: object) -> str:
        """The policy of a domain (the default for an unlisted one)."""
        return self._by_domain.get(domain, self.default) if isinstance(domain, str) else self.default
