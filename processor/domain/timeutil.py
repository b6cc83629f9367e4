"""Event-time arithmetic for the domain core.

All time in the core is event time (`occurred_at`, epoch milliseconds UTC); months are counted as
integers (`year * 12 + month - 1`) so windows like "M-11..M" are plain subtraction. No clock is read.
"""
from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, timedelta

MS_MINUTE = 60_000
MS_HOUR = 3_600_000
MS_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def parse_iso(text: str) -> int:
    """ISO-8601 UTC (`2026-10-05T12:00:00Z`) to epoch milliseconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def iso_seconds(ms: int) -> str:
    """The ledger's time form: ISO-8601 UTC floored to the second."""
    t = time.gmtime(ms // 1000)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


def month_index(ms: int) -> int:
    t = time.gmtime(ms // 1000)
    return t.tm_year * 12 + t.tm_mon - 1


def period_to_month(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def month_to_period(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def month_start_ms(month: int) -> int:
    return parse_iso(f"{month_to_period(month)}-01T00:00:00Z")


def days_in_month(month: int) -> int:
    return calendar.monthrange(month // 12, month % 12 + 1)[1]


def day_of_month(ms: int) -> int:
    return time.gmtime(ms // 1000).tm_mday


def calendar_month_number(month: int) -> int:
    """1..12 for a month index."""
    return month % 12 + 1
