"""Text-level cleaning rules: markup, invisible characters, language detection.

Pure string functions, no configuration objects: ``pipelines.clean`` composes them per its
``CleanConfig``. Whitespace is left as it is (folding it is dedup's normalization, and training
keeps line breaks), except that a carriage return becomes a line feed.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Han ideographs: unified (U+4E00..), extension A (U+3400..), compatibility (U+F900..), and the
# supplementary-plane extensions B.. and compatibility supplement.
_CJK_RANGES = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f\U00030000-\U0003134f"
)
_CJK_RUN = re.compile(f"[{_CJK_RANGES}]+")
_NOT_LATIN_BYTES = bytes(b for b in range(128) if not chr(b).isalpha())
_WHITESPACE_BYTES = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.split() splits on, in ASCII

# Block-level elements whose boundaries separate words: their tags become a line break so that
# "<p>a</p><p>b</p>" does not glue "ab". Other tags (inline: b, span, a, ...) are removed.
_BLOCK_TAGS = (
    "address|article|aside|blockquote|br|dd|div|dl|dt|fieldset|figcaption|figure|footer|form|"
    "h[1-6]|header|hr|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|tr|ul"
)
_INLINE_TAGS = (
    "a|abbr|b|bdi|bdo|big|body|button|caption|center|cite|code|col|colgroup|data|del|dfn|em|font|head|"
    "html|i|iframe|img|input|ins|kbd|label|legend|link|mark|meta|noscript|object|option|picture|q|s|"
    "samp|select|small|source|span|strike|strong|sub|summary|sup|svg|textarea|time|title|tt|u|var|"
    "video|audio|wbr|details|template|canvas|map|area|base|param|track|embed"
)
# A tag only when it looks like one: a known element name, then attributes or nothing. Text such
# as "x < 3 and y > 2" or "<name>" placeholders is left alone.
_ATTRS = r"""(?:\s+[^\s"'<>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*\s*/?"""
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->|<!DOCTYPE[^>]*>|<\?xml[^>]*\?>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(rf"</?(?:{_BLOCK_TAGS}){_ATTRS}>", re.IGNORECASE)
_INLINE_TAG = re.compile(rf"</?(?:{_INLINE_TAGS}){_ATTRS}>", re.IGNORECASE)
# Only terminated entities: html.unescape alone would also turn "?a=1&copy=2" into "?a=1©=2".
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

# C0 and C1 controls except tab and line feed (carriage return is handled apart), DEL, and the
# zero-width characters (space, non-joiner, joiner, word joiner, BOM / zero-width no-break space).
_INVISIBLE = {c: None for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                                0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]}
_INVISIBLE_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in _INVISIBLE) + "\r]")


def strip_html(text: str) -> str:
    """Remove HTML markup: script/style elements with their contents, comments, tags; unescape entities.

    Block-level tags (``p``, ``div``, ``br``, ``li``, ...) become ``"\\n"`` so words on either side
    stay apart; inline tags are removed. Entities (terminated by ``;``) are unescaped last, so
    ``&lt;b&gt;`` ends as the literal text ``<b>``.
    """
    if "<" in text:
        text = _SCRIPT_STYLE.sub("", text)
        text = _COMMENT.sub("", text)
        text = _BLOCK_TAG.sub("\n", text)
        text = _INLINE_TAG.sub("", text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return text


def strip_invisible(text: str) -> str:
    """Remove control characters (except ``\\t`` and ``\\n``) and zero-width characters.

    ``\\r\\n`` and a lone ``\\r`` become ``\\n``: they are line breaks, and removing a lone one
    would glue two lines together.
    """
    if _INVISIBLE_CHARS.search(text) is None:  # the common case: nothing to do, no copy
        return text
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_INVISIBLE)


def detect_language(text: str) -> str:
    """Classify a text as ``"zh"``, ``"en"`` or ``"other"``.

    Letters are Han ideographs (unified, extensions, compatibility) and ASCII Latin letters.
    Chinese if ideographs are at least 20% of the letters (so English terms inside Chinese text
    stay ``zh``); English if Latin letters are at least half of the non-whitespace characters;
    otherwise ``"other"`` (digits, symbols, other scripts, empty text).

    Args:
        text: the text to classify.

    Returns:
        ``"zh"``, ``"en"`` or ``"other"``.
    """
    if text.isascii():  # the common English case: count on bytes, no regex
        data = text.encode("ascii")
        latin = len(data.translate(None, _NOT_LATIN_BYTES))
        return "en" if latin and 2 * latin >= len(data.translate(None, _WHITESPACE_BYTES)) else "other"
    text = unicodedata.normalize("NFKC", text)  # full-width Latin letters count as Latin
    cjk = sum(map(len, _CJK_RUN.findall(text)))
    latin = len(text.encode("ascii", "ignore").translate(None, _NOT_LATIN_BYTES))
    if cjk and 5 * cjk >= cjk + latin:
        return "zh"
    if latin and 2 * latin >= len("".join(text.split())):
        return "en"
    return "other"
