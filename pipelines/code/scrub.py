"""Scrub secrets and PII out of a source file before anything else sees it.

Three passes, in order:

1. the project's own detectors (``DETECTORS``): private key blocks, connection strings with credentials,
   well-known token shapes (AWS, GitHub, Slack, Stripe, JWT), passwords and keys assigned to a name,
   quoted high-entropy strings; then PII: e-mails, names in author/copyright headers, internal
   hostnames, private IPv4 addresses;
2. detect-secrets' plugins (all of them, its default settings) over every line of what pass 1 left,
   each value it names replaced where it stands;
3. a verification scan (both detectors again) of the result: anything still found, or a private key
   block that never ends, means the secret cannot be removed safely and the file is quarantined
   (``Scrubbed.problem``), never passed on half-scrubbed.

Every value becomes a typed placeholder, ``<SECRET_AWS_KEY_1>``, ``<EMAIL_2>``..., numbered per type and
consistent within a file (the same value, the same placeholder), so code that uses a key twice still
reads as using one key. Pure logic: text in, text and counts out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

PLACEHOLDER = re.compile(r"<(?:SECRET_[A-Z_]+|EMAIL|NAME|HOSTNAME|IP)_\d+>")

_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK|)-----.*?-----END \1PRIVATE KEY\2-----", re.S)
# scheme://user:password@host — the credentials make the whole URL a secret (the host is often internal too).
_CONNECTION = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@'\"`]+:[^\s@/'\"`]+@[^\s'\"`<>]+")
_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS_KEY", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b")),
    ("GITHUB_TOKEN", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b")),
    ("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,250}")),
    ("STRIPE_KEY", re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,99}\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("GOOGLE_API_KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("OPENAI_KEY", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}")),
)
# name = "literal" where the name says it is a credential (password, secret, token, api key...).
_ASSIGNED = re.compile(
    r"""(?ix)
    (?P<name>[A-Za-z_][A-Za-z0-9_.-]*?(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key
        |private[_-]?key|credentials?|auth(?!or))[A-Za-z0-9_]*)
    (?P<sep>["']?\s*(?::=|=|:|=>)\s*[rbuf]{0,2})
    (?P<q>["'`])(?P<value>[^"'`\n]{4,})(?P=q)""")
# Quoted strings long enough to be keys: checked for entropy.
_QUOTED = re.compile(r"""(?P<q>["'`])(?P<value>[A-Za-z0-9+/=_\-.~]{20,})(?P=q)""")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_AUTHOR = re.compile(
    r"""(?im)(?P<lead>(?:__(?:author|maintainer|credits)__\s*=\s*[\[(]?\s*["']|@author\s+|(?:^|[#*/]\s*)(?:authors?|maintainers?|written\s+by|contributors?)\s*:\s*
    |copyright\s+(?:\(c\)\s*|©\s*)?(?:\d{4}(?:\s*[-,]\s*\d{4})*\s*,?\s*)))(?P<name>[A-Z][\w'.-]+(?:[ \t]+[A-Z][\w'.-]+){0,3})""",
    re.X)
_IPV4 = re.compile(r"(?<![\d.])(?:10\.\d{1,3}|172\.(?:1[6-9]|2\d|3[01])|192\.168|100\.(?:6[4-9]|[7-9]\d|1[01]\d|12[0-7]))"
                   r"\.\d{1,3}\.\d{1,3}(?![\d.])")
_INTERNAL_SUFFIXES = ("internal", "corp", "local", "lan", "intranet", "private", "localdomain")
# detect-secrets names -> placeholder types (anything else: its name upper-snaked).
_DS_TYPES = {"AWS Access Key": "AWS_KEY", "Secret Keyword": "PASSWORD", "Basic Auth Credentials": "CONNECTION_STRING",
             "Private Key": "PRIVATE_KEY", "JSON Web Token": "JWT", "Base64 High Entropy String": "HIGH_ENTROPY",
             "Hex High Entropy String": "HIGH_ENTROPY", "GitHub Token": "GITHUB_TOKEN", "Slack Token": "SLACK_TOKEN",
             "Stripe Access Key": "STRIPE_KEY"}
# detect-secrets' entropy plugins flag short hex runs inside ordinary strings; a key is longer than this.
_DS_MIN_CHARS = 12
_DS_MIN_KEYWORD_CHARS = 6


@dataclass(frozen=True)
class ScrubConfig:
    """What the scrubber replaces.

    Attributes:
        internal_domains: hostname suffixes that are internal (besides ``.internal``, ``.corp``, ``.local``...).
        entropy_base64: Shannon entropy (bits/char) above which a quoted base64-like string of 20+ chars is a secret.
        entropy_hex: the same for hex strings (lower: hex has 16 symbols).
        use_detect_secrets: run detect-secrets' plugins (pass 2 and the verification).
    """

    internal_domains: tuple[str, ...] = ()
    entropy_base64: float = 4.3
    entropy_hex: float = 3.0
    use_detect_secrets: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.entropy_hex <= self.entropy_base64 <= 6:
            raise ValueError("ScrubConfig: use 0 < entropy_hex <= entropy_base64 <= 6 (bits per character)")
        object.__setattr__(self, "internal_domains", tuple(d.lower().lstrip(".") for d in self.internal_domains))


@dataclass
class Scrubbed:
    """A scrubbed file: its text, how many values of each type were replaced, and ``problem`` when a secret
    could not be removed safely (the file must then be quarantined, ``text`` is not to be used)."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)
    problem: str | None = None

    @property
    def secrets(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind.startswith("SECRET_"))


class _Placeholders:
    """Same value, same placeholder within one file; numbered per type."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.counts: Counter[str] = Counter()

    def __call__(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.by_value:
            self.counts[kind] += 1
            self.by_value[key] = f"<{kind}_{self.counts[kind]}>"
        return self.by_value[key]


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _looks_random(value: str, config: ScrubConfig) -> bool:
    if PLACEHOLDER.search(value) or len(set(value)) < 8:
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return len(value) >= 32 and shannon_entropy(value) > config.entropy_hex
    # Identifiers, dotted names and paths are long but not random: a key mixes classes of characters.
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes >= 3 and shannon_entropy(value) > config.entropy_base64


def _is_internal_host(host: str, config: ScrubConfig) -> bool:
    host = host.lower()
    suffixes = _INTERNAL_SUFFIXES + config.internal_domains
    return any(host == s or host.endswith("." + s) for s in suffixes)


_HOST = re.compile(r"\b(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}\b")


def _own_passes(text: str, config: ScrubConfig, ph: _Placeholders) -> str:
    text = _PRIVATE_KEY_BLOCK.sub(lambda m: ph("SECRET_PRIVATE_KEY", m.group(0)), text)
    text = _CONNECTION.sub(lambda m: ph("SECRET_CONNECTION_STRING", m.group(0)), text)
    for kind, pattern in _TOKENS:
        text = pattern.sub(lambda m, k=kind: ph(f"SECRET_{k}", m.group(0)), text)

    def assigned(m: re.Match[str]) -> str:
        value = m.group("value")
        if PLACEHOLDER.fullmatch(value) or _is_reference(value):
            return m.group(0)
        return f"{m.group('name')}{m.group('sep')}{m.group('q')}{ph('SECRET_PASSWORD', value)}{m.group('q')}"

    text = _ASSIGNED.sub(assigned, text)
    text = _QUOTED.sub(lambda m: (f"{m.group('q')}{ph('SECRET_HIGH_ENTROPY', m.group('value'))}{m.group('q')}"
                                  if _looks_random(m.group("value"), config) else m.group(0)), text)
    # PII: names in author headers first (their e-mails follow the name), then e-mails, hosts, addresses.
    text = _AUTHOR.sub(lambda m: m.group("lead") + ph("NAME", m.group("name")), text)
    text = _EMAIL.sub(lambda m: ph("EMAIL", m.group(0)), text)
    text = _HOST.sub(lambda m: ph("HOSTNAME", m.group(0)) if _is_internal_host(m.group(0), config) else m.group(0),
                     text)
    return _IPV4.sub(lambda m: ph("IP", m.group(0)), text)


def _is_reference(value: str) -> bool:
    """A value that names where a secret comes from rather than being one (``${DB_PASSWORD}``, ``os.environ``)."""
    return bool(re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|%\([a-z_]+\)s|\{[a-z_]*\}|<[^>]*>|\*+|x+|changeme|"
                             r"password|secret|token|none|null|example|dummy", value, re.I))


@lru_cache(maxsize=1)
def _plugins() -> tuple:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    # Public IPs in code are service addresses, not PII; internal ones are replaced by the own pass.
    return tuple(cls() for name, cls in get_mapping_from_secret_type_to_class().items() if name != "Public IP (ipv4)")


# A line none of detect-secrets' plugins can report a value of _DS_MIN_KEYWORD_CHARS+ from: no run of that many
# non-blank characters and no quote (a quoted keyword value may hold blanks).
_DS_CANDIDATE = re.compile(r"\S{%d}|[\"'`]" % _DS_MIN_KEYWORD_CHARS)


def _detect_secrets_line(line: str) -> tuple[tuple[str, str], ...]:
    """``(type, value)`` of what detect-secrets' plugins find in one line (each plugin's own line analysis, not
    ``scan_line``'s eager mode, which takes every identifier for a high-entropy string)."""
    found = []
    for plugin in _plugins():
        for secret in plugin.analyze_line(filename="file.py", line=line, line_number=1):
            value = secret.secret_value
            minimum = _DS_MIN_KEYWORD_CHARS if secret.type == "Secret Keyword" else _DS_MIN_CHARS
            if value and len(value) >= minimum and not PLACEHOLDER.search(value) and not _is_reference(value):
                found.append((_DS_TYPES.get(secret.type, re.sub(r"\W+", "_", secret.type).upper().strip("_")), value))
    return tuple(found)


def _detect_secrets_values(lines: Iterable[str], memo: dict[str, tuple[tuple[str, str], ...]] | None = None,
                           ) -> list[tuple[str, str]]:
    """``(type, value)`` of everything detect-secrets' plugins find in ``lines``.

    Cheap first: blank, over-long (minified: quarantined before scrubbing) and candidate-free lines are skipped,
    and a line seen before in ``memo`` (one file's repeated lines, and the verification scan's unchanged lines)
    is not analysed again. The plugins' result depends on the line's text only.
    """
    found: list[tuple[str, str]] = []
    memo = {} if memo is None else memo
    for line in lines:
        if len(line) > 2000 or not _DS_CANDIDATE.search(line):
            continue
        if line not in memo:
            memo[line] = _detect_secrets_line(line)
        found.extend(memo[line])
    return found


def _leftovers(text: str, config: ScrubConfig, memo: dict | None = None) -> list[str]:
    """Why ``text`` still holds a secret (empty when clean)."""
    problems = []
    if _PRIVATE_KEY_BEGIN.search(text):
        problems.append("a private key block without its END line")
    for kind, pattern in _TOKENS:
        if pattern.search(text):
            problems.append(f"a {kind} still present")
    if _CONNECTION.search(text):
        problems.append("a connection string still present")
    if config.use_detect_secrets:
        problems.extend(f"detect-secrets: {kind}" for kind, _ in _detect_secrets_values(text.splitlines(), memo))
    return problems


def scrub_text(text: str, *, config: ScrubConfig = ScrubConfig()) -> Scrubbed:
    """Replace every secret and PII value in ``text`` by a typed placeholder.

    Args:
        text: a source file's text.
        config: what counts as internal and as random.

    Returns:
        The scrubbed text and counts by placeholder type; ``problem`` set when a secret could not be removed
        (quarantine the file: its ``text`` may still hold it).
    """
    ph = _Placeholders()
    # A key block that never ends cannot be cut out safely: where its key material stops is unknown.
    unterminated = len(_PRIVATE_KEY_BEGIN.findall(text)) > len(_PRIVATE_KEY_BLOCK.findall(text))
    out = _own_passes(text, config, ph)
    memo: dict[str, tuple[tuple[str, str], ...]] = {}  # per file: the verification rescans mostly unchanged lines
    if config.use_detect_secrets:
        for kind, value in _detect_secrets_values(out.splitlines(), memo):
            if value in out:
                out = out.replace(value, ph(f"SECRET_{kind}", value))
    problems = _leftovers(out, config, memo)
    if unterminated:
        problems.append("a private key block without its END line")
    return Scrubbed(out, ph.counts, "; ".join(sorted(set(problems))) or None)


def contains_any(text: str, needles: Iterable[str]) -> list[str]:
    """The ``needles`` that occur in ``text`` (used by tests and the e2e search for planted secrets)."""
    return [n for n in needles if n and n in text]


Scrubber = Callable[[str], Scrubbed]
