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


#: Event times the day cache serves: 1970-01-01 up to the end of year 9999 (others go through
#: `time.gmtime` directly, as before).
_CACHED_END = 253_402_300_800_000
_DAYS: dict[int, tuple[str, int, int]] = {}
_DAYS_MAX = 100_000


def _day(day: int) -> tuple[str, int, int]:
    """("YYYY-MM-DD", month index, day of month) of a day number since the epoch, memoised: every
    event asks for its time's forms, and a stream's events fall on comparatively few days."""
    found = _DAYS.get(day)
    if found is None:
        t = time.gmtime(day * 86_400)
        found = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", t.tm_year * 12 + t.tm_mon - 1, t.tm_mday)
        if len(_DAYS) >= _DAYS_MAX:
            _DAYS.clear()
        _DAYS[day] = found
    return found


def iso_seconds(ms: int) -> str:
    """The ledger's time form: ISO-8601 UTC floored to the second."""
    if type(ms) is int and 0 <= ms < _CACHED_END:
        day, rest = divmod(ms, MS_DAY)
        s = rest // 1000
        return f"{(_DAYS.get(day) or _day(day))[0]}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"
    t = time.gmtime(ms // 1000)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


def month_index(ms: int) -> int:
    if type(ms) is int and 0 <= ms < _CACHED_END:
        return (_DAYS.get(ms // MS_DAY) or _day(ms // MS_DAY))[1]
    t = time.gmtime(ms // 1000)
    return t.tm_year * 12 + t.tm_mon - 1


def period_to_month(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def month_to_period(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


_MONTH_START: dict[int, int] = {}
_MONTH_DAYS: dict[int, int] = {}


def month_start_ms(month: int) -> int:
    start = _MONTH_START.get(month) if type(month) is int else None
    if start is None:
        start = parse_iso(f"{month_to_period(month)}-01T00:00:00Z")
        if type(month) is int and len(_MONTH_START) < _DAYS_MAX:
            _MONTH_START[month] = start
    return start


def days_in_month(month: int) -> int:
    days = _MONTH_DAYS.get(month) if type(month) is int else None
    if days is None:
        days = calendar.monthrange(month // 12, month % 12 + 1)[1]
        if type(month) is int and len(_MONTH_DAYS) < _DAYS_MAX:
            _MONTH_DAYS[month] = days
    return days


def day_of_month(ms: int) -> int:
    if type(ms) is int and 0 <= ms < _CACHED_END:
        return (_DAYS.get(ms // MS_DAY) or _day(ms // MS_DAY))[2]
    return time.gmtime(ms // 1000).tm_mday


def calendar_month_number(month: int) -> int:
    """1..12 for a month index."""
    return month % 12 + 1
