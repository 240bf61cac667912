"""Interval parsing and the arrival-date key layout."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.partition import Interval, arrival_date_of, day_number, from_day_number

D = dt.date


@pytest.mark.parametrize("text", ["2026-10-04_2026-10-11", "2026-10-04/2026-10-11", " 2026-10-04_2026-10-11\n"])
def test_parse_both_forms(text):
    interval = Interval.parse(text)
    assert interval == Interval(D(2026, 10, 4), D(2026, 10, 11))
    assert interval.name == "2026-10-04_2026-10-11"


def test_parse_round_trips_the_name():
    interval = Interval(D(2024, 12, 30), D(2025, 1, 6))
    assert Interval.parse(interval.name) == interval


@pytest.mark.parametrize(("text", "message"), [
    ("2026-10-04", "use START_END"),
    ("2026-10-04_2026-10-11_2026-10-18", "use START_END"),
    ("2026-13-04_2026-10-11", "interval '2026-13-04_2026-10-11': "),
    ("last week_this week", "interval 'last week_this week': "),
    ("2026-10-11_2026-10-04", "must be after start"),
    ("2026-10-04_2026-10-04", "must be after start"),
])
def test_parse_rejects_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        Interval.parse(text)


def test_from_datetimes_at_midnight():
    utc = dt.timezone.utc
    assert Interval.from_datetimes(dt.datetime(2026, 10, 4, tzinfo=utc), dt.datetime(2026, 10, 11, tzinfo=utc)) \
        == Interval(D(2026, 10, 4), D(2026, 10, 11))
    assert Interval.from_datetimes(D(2026, 10, 4), D(2026, 10, 5)) == Interval(D(2026, 10, 4), D(2026, 10, 5))
    # Midnight in UTC+8 is 16:00 UTC the day before: not a midnight-UTC bound.
    with pytest.raises(ValueError, match="not at midnight UTC"):
        Interval.from_datetimes(dt.datetime(2026, 10, 4, tzinfo=dt.timezone(dt.timedelta(hours=8))),
                                dt.datetime(2026, 10, 11, tzinfo=utc))


def test_from_datetimes_rejects_non_midnight():
    with pytest.raises(ValueError, match="2026-10-11 06:00:00 is not at midnight UTC"):
        Interval.from_datetimes(dt.datetime(2026, 10, 4), dt.datetime(2026, 10, 11, 6))


def test_dates_and_contains():
    interval = Interval(D(2024, 2, 27), D(2024, 3, 2))
    assert interval.dates() == [D(2024, 2, 27), D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1)]
    assert interval.contains(D(2024, 2, 27))
    assert not interval.contains(D(2024, 3, 2))


def test_day_numbers():
    assert day_number(D(1970, 1, 1)) == 0
    assert day_number(D(2024, 6, 3)) == 19877
    assert from_day_number(19877) == D(2024, 6, 3)


@pytest.mark.parametrize(("key", "expected"), [
    ("landing/legal/2024-06-03/a.jsonl", D(2024, 6, 3)),
    ("landing/legal/2024-06-03/sub/a.jsonl", D(2024, 6, 3)),
    ("landing/legal/2024-02-30/a.jsonl", None),     # date-shaped but not a date
    ("landing/legal/20240603/a.jsonl", None),
    ("landing/legal/a.jsonl", None),
    ("landing/medical/2024-06-03/a.jsonl", None),   # another prefix
])
def test_arrival_date_of(key, expected):
    assert arrival_date_of(key, "landing/legal") == expected


def test_arrival_date_of_accepts_prefix_with_trailing_slash():
    assert arrival_date_of("landing/legal/2024-06-03/a.jsonl", "landing/legal/") == D(2024, 6, 3)
