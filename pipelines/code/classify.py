"""What a source file is: its language (by extension, then content), licence header, and whether it is
quarantined (vendored, generated, binary, minified) and why. Pure logic over a path and bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Extension -> language. Python first: the domain's examples and grammar are Python's.
EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
    ".java": "java", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".rb": "ruby", ".sh": "shell", ".sql": "sql", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".md": "markdown", ".txt": "text", ".cfg": "ini", ".ini": "ini", ".html": "html", ".css": "css",
}
_SHEBANGS = (("python", re.compile(r"^#!.*\bpython[0-9.]*\b")), ("shell", re.compile(r"^#!.*\b(?:ba|z|da)?sh\b")),
             ("javascript", re.compile(r"^#!.*\bnode\b")))
# Content signs of Python in a file without a known extension (two of them make it Python).
_PYTHON_SIGNS = (re.compile(r"^(?:from\s+[\w.]+\s+)?import\s+\w", re.M), re.compile(r"^\s*def\s+\w+\s*\(.*\)\s*(?:->.*)?:", re.M),
                 re.compile(r"^\s*class\s+\w+\s*(?:\(.*\))?\s*:", re.M), re.compile(r"^if\s+__name__\s*==", re.M),
                 re.compile(r"^\s*(?:elif|except|finally)\b.*:", re.M))
VENDORED_DIRS = ("vendor", "vendored", "third_party", "thirdparty", "node_modules", "site-packages", "dist-packages",
                 ".venv", "venv", "bower_components", ".git")
_GENERATED = re.compile(r"(?i)(?:generated\s+by|auto-?generated|do\s+not\s+edit|@generated|code\s+generated)")
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\- ()]+?)\s*(?:\*/|-->|$)", re.M)
_LICENCES = (("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
             ("MIT", re.compile(r"\bMIT License\b|Permission is hereby granted, free of charge", re.I)),
             ("GPL-3.0", re.compile(r"GNU General Public License.{0,80}version 3", re.I | re.S)),
             ("GPL-2.0", re.compile(r"GNU General Public License.{0,80}version 2", re.I | re.S)),
             ("BSD-3-Clause", re.compile(r"Redistribution and use in source and binary forms", re.I)),
             ("Proprietary", re.compile(r"\b(?:proprietary|confidential|all rights reserved)\b", re.I)))
HEADER_CHARS = 2000  # licence and "generated" headers live in a file's first lines


@dataclass(frozen=True)
class ClassifyConfig:
    """Quarantine thresholds.

    Attributes:
        max_line_chars: a line longer than this marks a file minified.
        max_mean_line_chars: so does a mean line length above this (over files of 5+ lines... or one line).
        max_file_bytes: larger source files are quarantined (``too_large``): generated data, not code.
        languages: languages kept; others are quarantined (``language``); empty = keep every detected language.
    """

    max_line_chars: int = 1000
    max_mean_line_chars: int = 300
    max_file_bytes: int = 1_000_000
    languages: tuple[str, ...] = ("python",)

    def __post_init__(self) -> None:
        if self.max_line_chars < 80 or self.max_mean_line_chars < 40 or self.max_file_bytes < 1024:
            raise ValueError("ClassifyConfig: max_line_chars >= 80, max_mean_line_chars >= 40, max_file_bytes >= 1024")


@dataclass(frozen=True)
class FileFacts:
    """What was learnt about one file: ``quarantine`` is ``(reason, detail)`` or None."""

    path: str
    language: str | None
    licence: str | None
    size: int
    quarantine: tuple[str, str] | None = None


def detect_language(path: str, text: str) -> str | None:
    """The file's language: its extension, else its shebang, else Python when it reads like Python."""
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    if dot > 0 and name[dot:] in EXTENSIONS:
        return EXTENSIONS[name[dot:]]
    first = text.split("\n", 1)[0]
    for language, shebang in _SHEBANGS:
        if shebang.match(first):
            return language
    if sum(1 for sign in _PYTHON_SIGNS if sign.search(text)) >= 2:
        return "python"
    return None


def detect_licence(text: str) -> str | None:
    """The licence its header names: an SPDX identifier if given, else a recognised licence text."""
    head = text[:HEADER_CHARS]
    spdx = _SPDX.search(head)
    if spdx:
        return spdx.group(1).strip()
    return next((name for name, pattern in _LICENCES if pattern.search(head)), None)


def _vendored(path: str) -> str | None:
    parts = path.lower().split("/")[:-1]
    return next((p for p in parts if p in VENDORED_DIRS), None)


def is_binary(data: bytes) -> bool:
    """NUL bytes, or not UTF-8 with many control bytes, in the first 8 KiB."""
    head = data[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
        return False
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a multi-byte character cut by the 8 KiB window
            return False
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls > len(head) // 100


def classify(path: str, data: bytes, *, config: ClassifyConfig = ClassifyConfig()) -> tuple[FileFacts, str | None]:
    """Classify one file. Returns its facts and its decoded text (None when binary or undecodable).

    Quarantine reasons, first that applies: ``vendored``, ``binary``, ``not_utf8``, ``too_large``, ``generated``,
    ``minified``, ``language`` (not among ``config.languages``), ``empty``.
    """
    size = len(data)

    def out(reason: str, detail: str, language: str | None = None, licence: str | None = None,
            text: str | None = None) -> tuple[FileFacts, str | None]:
        return FileFacts(path, language, licence, size, (reason, detail)), text

    vendored = _vendored(path)
    if vendored:
        return out("vendored", f"under {vendored}/")
    if is_binary(data):
        return out("binary", "NUL or control bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return out("not_utf8", f"byte {exc.start} is not UTF-8")
    language, licence = detect_language(path, text), detect_licence(text)
    if size > config.max_file_bytes:
        return out("too_large", f"{size} bytes > {config.max_file_bytes}", language, licence)
    generated = _GENERATED.search(text[:HEADER_CHARS])
    if generated:
        return out("generated", f"header says {generated.group(0)!r}", language, licence)
    lines = text.splitlines() or [""]
    longest = max(len(line) for line in lines)
    mean = sum(len(line) for line in lines) / len(lines)
    if longest > config.max_line_chars or (mean > config.max_mean_line_chars and size > 1000):
        return out("minified", f"longest line {longest} chars, mean {mean:.0f}", language, licence)
    if config.languages and language not in config.languages:
        return out("language", f"{language or 'unknown'} not in {list(config.languages)}", language, licence)
    if not text.strip():
        return out("empty", "no code", language, licence)
    return FileFacts(path, language, licence, size), text
