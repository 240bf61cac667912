"""Mask personal data at render time: quarantined records can be raw (rejected before PII masking).

Every text a console page shows from quarantine goes through :func:`mask_for_display`; one mapping per page keeps
tokens consistent across the records shown (the same phone number is ``[PHONE_1]`` in every sample).
"""

from __future__ import annotations

from pipelines.pii import PiiMapping, mask_text

MAX_CHARS = 500  # a sample is a glimpse, not an export


def mask_for_display(text: object, *, mapping: PiiMapping | None = None, limit: int = MAX_CHARS) -> str | None:
    """``text`` with every e-mail, phone, ID, card number and address replaced by a token, cut to ``limit``.

    Masks before cutting, so a value split by the cut is never shown in part.
    """
    if text is None:
        return None
    masked = mask_text(str(text), mapping=mapping if mapping is not None else PiiMapping())
    return masked if len(masked) <= limit else masked[:limit] + "…"
