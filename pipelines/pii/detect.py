"""Find personal data in a text: compiled patterns propose candidates, Python validates them.

Kinds and what counts as one:

* ``email``: ``local@domain.tld`` (ASCII).
* ``phone``: a Chinese mobile (``1[3-9]`` + 9 digits, optionally ``0086``/``+86`` and space or
  dash groups), a Chinese landline with its area code (``010-12345678``, ``(0755)1234-5678``),
  an international number written with ``+<country code>`` (8-15 digits), a North American
  number (``(415) 555-2671``, ``415-555-2671``, ``1-800-555-0199``).
* ``id``: a Chinese resident identity number: 17 digits and a check character (digit or ``X``),
  region first digit 1-9, a real birth date (1900-2099) and a valid ISO 7064 MOD 11-2 checksum.
* ``card``: a payment card number, 13-19 digits, plain or grouped by spaces/dashes, with a card
  network prefix (3-6, or Mastercard's 2221-2720 with 16 digits) and a valid Luhn checksum.
* ``address``: a Chinese street address ending in a house number (``北京市朝阳区建国路88号``,
  optionally ``...院3号楼2单元501室``) and an English street address (``221B Baker Street``,
  ``1600 Pennsylvania Ave NW``, optionally with unit and ``City, ST 12345``).

Numbers are only taken whole: a candidate never starts or ends inside a longer run of digits or
letters, nor next to a decimal point or before a thousands group (amounts ``1,234,567.89``, versions
``10.0.19041.1``). Dates, 18-digit numbers failing the date or checksum (order numbers),
Luhn-failing or non-card-prefixed numbers (timestamps, ISBNs) are not personal data.
Full-width digits and letters are read as their ASCII forms, so ``１３８…`` is found too.

Each hit carries a *key*: the value normalized so that spellings of the same value agree
(``+86 138-0013-8000`` and ``13800138000`` are one phone, e-mails compare case-insensitively).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from pipelines.config.governance import PII_KINDS as KINDS  # named once, with PiiConfig

# Start/end of a whole number: not inside a run of letters/digits, not after "1." (a decimal or
# version) and not before ".5" or a thousands group ",000". A comma before the number is no
# obstacle: a thousands group has 3 digits, too few for any kind, while "138...,139..." lists two.
_START = r"(?<![0-9A-Za-z])(?<![0-9]\.)"
_END = r"(?![0-9A-Za-z])(?!\.[0-9])(?!,[0-9]{3}(?![0-9]))"

# Alternatives of the numeric scan, by name; order matters only for speed (each candidate that
# fails validation is retried against the others at the same position). Each starts with a digit,
# "+" or "(" and with ``_START`` (or stricter), so ``_CANDIDATE`` finds every place one may start.
_ALTERNATIVES = {
    # +<country code> then groups: "+44 20 7946 0958", "+1 (415) 555-2671", "+44 (0)20 7946 0958".
    "intl": r"(?<![0-9A-Za-z+])\+[1-9][0-9]{0,2}(?:[ .\-]?(?:[(（][0-9]{1,4}[)）]|[0-9]{1,5})){1,6}" + _END,
    # Chinese mobile with 0086 or separators (plain 11 digits are a "digits" run).
    "mobile": _START + r"(?<!\+)(?:0086[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2}" + _END,
    # Chinese landline: (0755)1234-5678, （0755）1234-5678, 010-12345678, 0755 1234 5678, optional extension.
    "landline": _START + r"(?:[(（]0[1-9][0-9]{1,2}[)）][ \-]?|0[1-9][0-9]{1,2}[ \-])[0-9]{3,4}[ \-]?[0-9]{4}"
                         r"(?:-[0-9]{1,5})?" + _END,
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 1-800-555-0199.
    "nanp": _START + r"(?<!\+)(?:1[ .\-])?(?:[(（][2-9][0-9]{2}[)）] ?|[2-9][0-9]{2}[.\-])"
                     r"[2-9][0-9]{2}[.\-][0-9]{4}" + _END,
    # Card numbers in groups: 4-4-4-4(-3), 4-4-4-1..4, 4-6-5 (Amex).
    "grouped": _START + r"(?:[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{5})"
                        + _END,
    # A plain run of digits (mobile, resident ID, card): classified by its length and checksums.
    "digits": _START + r"(?<![0-9]-)(?:[0-9]{17}[Xx]|[0-9]{11,19})" + _END + r"(?!-[0-9])",
    # English street address: number, optional direction, 1-3 capitalized words or "5th", a suffix.
    "street": _START + r"[0-9]{1,5}[A-Za-z]?(?:-[0-9]{1,5})? (?:(?:[NSEW]|North|South|East|West)\.? )?"
              r"(?:(?:[A-Z][a-z]+|[0-9]{1,3}(?:st|nd|rd|th))\.? ){1,3}"
              r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq"
              r"|Terrace|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir)\b\.?"
              r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b)?"
              r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|#)\.? ?[0-9A-Za-z\-]{1,6}\b)?"
              r"(?:, [A-Z][a-z]+(?: [A-Z][a-z]+){0,2}, [A-Z]{2} [0-9]{5}(?:-[0-9]{4})?\b)?",
}
_LANDLINE_PARTS = re.compile(r"[(（]?([0-9]+)[)）]?[ \-]?([0-9]{3,4})[ \-]?([0-9]{4})(?:-([0-9]{1,5}))?")
_ALT_KIND = {"intl": "phone", "mobile": "phone", "landline": "phone", "nanp": "phone", "grouped": "card",
             "digits": None, "street": "address"}
_NUMERIC = re.compile("|".join(f"(?P<{name}>{body})" for name, body in _ALTERNATIVES.items()))
_SINGLE = {name: re.compile(body) for name, body in _ALTERNATIVES.items()}
# Where an alternative can start: a digit, or "+" / "(" / "（" before a digit, not after a letter/digit
# or after a decimal point. A single character class first lets the regex engine skip
# through the text fast; the alternatives are then only tried at these few positions.
_CANDIDATE = re.compile(r"[0-9+(（](?<![0-9A-Za-z].)(?<![0-9]\..)(?:(?<=[0-9])|(?=[0-9]))")

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)

# Chinese street address: anchored on "<road suffix><number>号"; the part before the suffix
# (province, city, district, road name) is found by walking back over Han characters.
_ZH_ANCHOR = re.compile(
    r"(?:路|街|道|巷|弄|胡同|村)[0-9]{1,5}(?:-[0-9]{1,5})?[号弄](?!线)"
    r"(?:院|楼)?(?:(?:[0-9]{1,4}|[A-Z])(?:号楼|栋|幢|座|单元|层|楼|室|号)(?!线))*"
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Characters that end the walk back: they belong to the sentence, not to the place name.
_ZH_STOP = frozenset("在住于是到从往至的址为和与及或我你他她您请寄送收了去来位处近旁边对面即")
_ZH_MAX_BACK = 20
_ZH_PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
    "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
    "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
)
# Suffixes of admin divisions, most telling first: the address starts two characters before the
# first of them (most city and district names have two characters).
_ZH_ADMIN = ("市", "区", "县", "旗", "镇", "乡", "州")
_ZH_ROAD_NAME = 6  # characters kept before the road suffix when nothing else marks the start

# Full-width forms of ASCII are read as ASCII when a full-width digit, letter, "@" or "+" is
# there (full-width punctuation alone is ordinary Chinese text: no copy for it; the patterns
# accept full-width parentheses as they are).
_FULL_WIDTH = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff20\uff0b]")
_FOLD = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class Hit:
    """One piece of personal data: ``text[start:end]`` of ``kind``; ``key`` is its normalized value."""

    start: int
    end: int
    kind: str
    key: str

    def __repr__(self) -> str:  # never show the value
        return f"Hit({self.start}, {self.end}, {self.kind!r})"


def is_resident_id(value: str) -> bool:
    """Whether ``value`` is a valid 18-character Chinese resident identity number.

    Region first digit 1-9, a real birth date (years 1900-2099) at characters 7-14 and the
    ISO 7064 MOD 11-2 check character (``X`` for 10, either case).
    """
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit() or value[0] == "0":
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2099:
        return False
    total = sum(int(c) * w for c, w in zip(value, _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == value[17].upper()


def luhn_ok(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """Whether a string of ASCII digits is a payment card number: length, network prefix, Luhn.

    Prefixes 3-6 (Amex, JCB, Diners, Visa, Mastercard, Discover, UnionPay, Maestro) with 13-19
    digits, or Mastercard 2221-2720 with 16; ISBN-13s (978/979) and timestamps fail the prefix.
    """
    n = len(digits)
    if not 13 <= n <= 19:
        return False
    if digits[0] in "3456":
        return luhn_ok(digits)
    return n == 16 and 2221 <= int(digits[:4]) <= 2720 and luhn_ok(digits)


def _digits(value: str) -> str:
    return "".join(c for c in value if "0" <= c <= "9")


def _phone_key(alt: str, value: str) -> str | None:
    """The canonical ``+<country><number>`` of a phone candidate, or None if it is not one."""
    if alt == "intl":
        digits = _digits(value.replace("(0)", "").replace("（0）", ""))
        return "+" + digits if 8 <= len(digits) <= 15 else None
    digits = _digits(value)
    if alt == "mobile":
        return "+86" + digits[-11:]
    if alt == "landline":
        m = _LANDLINE_PARTS.match(value)
        area, local = m.group(1), m.group(2) + m.group(3)
        # 010 and 020-029 are the three-digit area codes; every other area code has four digits.
        if len(area) != (3 if area[1] in "12" else 4) or (area[1] == "1" and area[2] != "0") or local[0] == "0":
            return None
        return "+86" + area[1:] + local + (f"x{m.group(4)}" if m.group(4) else "")
    if alt == "nanp":
        return "+1" + digits[-10:]
    return None


def _classify(alt: str, value: str, kinds: frozenset[str]) -> tuple[str, str] | None:
    """``(kind, key)`` of a candidate found by alternative ``alt``, or None if it is not personal data."""
    if alt == "digits":
        if len(value) == 18 and "id" in kinds and is_resident_id(value):
            return "id", value.upper()
        if value.isdigit():
            if "card" in kinds and is_card_number(value):
                return "card", value
            if "phone" in kinds:
                for prefix in ("", "86", "0086"):
                    rest = value[len(prefix):]
                    if value.startswith(prefix) and len(rest) == 11 and rest[0] == "1" and rest[1] in "3456789":
                        return "phone", "+86" + rest
        return None
    kind = _ALT_KIND[alt]
    if kind not in kinds:
        return None
    if kind == "phone":
        key = _phone_key(alt, value)
        return None if key is None else ("phone", key)
    if kind == "card":
        digits = _digits(value)
        return ("card", digits) if is_card_number(digits) else None
    return "address", " ".join(value.split())


def _numeric_hits(scan: str, kinds: frozenset[str]) -> list[Hit]:
    hits: list[Hit] = []
    end = 0
    for candidate in _CANDIDATE.finditer(scan):
        start = candidate.start()
        if start < end:
            continue  # inside the previous hit
        m = _NUMERIC.match(scan, start)
        if m is None:
            continue
        alt = m.lastgroup
        found = _classify(alt, m.group(), kinds)
        stop = m.end()
        if found is None:
            # Another alternative may match here (a failed 18-digit ID can still be a card).
            for other, pattern in _SINGLE.items():
                m2 = pattern.match(scan, start) if other != alt else None
                if m2 is not None:
                    found = _classify(other, m2.group(), kinds)
                    if found is not None:
                        stop = m2.end()
                        break
        if found is not None:
            hits.append(Hit(start, stop, found[0], found[1]))
            end = stop
    return hits


def _zh_address_hits(scan: str) -> list[Hit]:
    hits = []
    floor = 0  # the walk back never enters the previous address
    for m in _ZH_ANCHOR.finditer(scan):
        start = m.start()
        limit = max(floor, start - _ZH_MAX_BACK)
        while start > limit and scan[start - 1] not in _ZH_STOP and _HAN.match(scan, start - 1):
            start -= 1
        if start == m.start():
            continue  # "路88号" with no road name is not an address
        prefix = scan[start:m.start()]
        # Start at a province name when one is there; else two characters before the first
        # admin suffix; else keep the road name. Taking a character too many is safe, too few leaks.
        cut = min((i for i in (prefix.find(p) for p in _ZH_PROVINCES) if i >= 0), default=-1)
        if cut < 0:
            admin = next((i for i in (prefix.find(a, 1) for a in _ZH_ADMIN) if i >= 0), -1)
            cut = max(0, admin - 2) if admin >= 0 else max(0, len(prefix) - _ZH_ROAD_NAME)
        start += cut
        hits.append(Hit(start, m.end(), "address", scan[start:m.end()]))
        floor = m.end()
    return hits


def find_pii(text: str, *, kinds: frozenset[str] | tuple[str, ...] = KINDS) -> list[Hit]:
    """Find the personal data in a text.

    Args:
        text: the text to scan.
        kinds: which kinds to look for (a subset of ``KINDS``).

    Returns:
        Non-overlapping hits in text order; where candidates overlap, the one starting first
        wins, then the longest (an e-mail ``13800138000@163.com`` is one e-mail, not a phone).
    """
    kinds = frozenset(kinds)
    scan = text.translate(_FOLD) if _FULL_WIDTH.search(text) else text
    hits = _numeric_hits(scan, kinds) if kinds - {"email"} else []
    extra = False
    if "email" in kinds and "@" in scan:
        hits += [Hit(m.start(), m.end(), "email", m.group().lower()) for m in _EMAIL.finditer(scan)]
        extra = True
    if "address" in kinds and ("号" in scan or "弄" in scan):
        zh = _zh_address_hits(scan)
        hits += zh
        extra = extra or bool(zh)
    if not extra:
        return hits  # the numeric scan alone never overlaps itself
    hits.sort(key=lambda h: (h.start, -h.end))
    kept: list[Hit] = []
    for hit in hits:
        if not kept or hit.start >= kept[-1].end:
            kept.append(hit)
    return kept
