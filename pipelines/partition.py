"""Data intervals and the object-store key layout that depends on them.

A partition is one domain's records whose arrival date (the ``YYYY-MM-DD`` folder in the landing
key, never S3 ``LastModified``, which backfills cannot set) falls in ``[start, end)``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open range of arrival dates ``[start, end)``."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"interval end {self.end} must be after start {self.start}")

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Parse ``2026-10-04_2026-10-11`` (the partition name) or ``2026-10-04/2026-10-11``."""
        parts = re.split(r"[_/]", text.strip())
        if len(parts) != 2:
            raise ValueError(f"interval {text!r}: use START_END, e.g. 2026-10-04_2026-10-11")
        try:
            return cls(dt.date.fromisoformat(parts[0][:10]), dt.date.fromisoformat(parts[1][:10]))
        except ValueError as exc:
            raise ValueError(f"interval {text!r}: {exc}") from None

    @classmethod
    def from_datetimes(cls, start: dt.datetime | dt.date, end: dt.datetime | dt.date) -> Interval:
        """Build from an Airflow data interval; times must be midnight (weekly/daily schedules)."""
        def as_date(value: dt.datetime | dt.date) -> dt.date:
            if isinstance(value, dt.datetime):
                if value.utcoffset():
                    value = value.astimezone(dt.timezone.utc)
                if (value.hour, value.minute, value.second, value.microsecond) != (0, 0, 0, 0):
                    raise ValueError(f"data interval bound {value} is not at midnight UTC")
                return value.date()
            return value

        return cls(as_date(start), as_date(end))

    @property
    def name(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days)]

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (what the dedup index stores)."""
    return (day - EPOCH).days


def from_day_number(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(n))


def arrival_date_of(key: str, prefix: str) -> dt.date | None:
    """The arrival date encoded in ``<prefix>/<YYYY-MM-DD>/...``, or None if the key has none."""
    rest = key[len(prefix):].lstrip("/") if key.startswith(prefix) else ""
    folder = rest.split("/", 1)[0]
    if not _DATE_DIR.match(folder):
        return None
    try:
        return dt.date.fromisoformat(folder)
    except ValueError:
        return None
