"""ISO-8601 text <-> epoch milliseconds, the two forms of `occurred_at`.

Inside the processor a time is an `int` of milliseconds since the epoch, UTC (what Avro's
timestamp-millis carries): cheap to compare and bucket, and free of time zones. Files and the CLI
speak ISO-8601 (`2026-10-05T12:00:00Z`). The conversion is exact integer arithmetic, so a
round trip never drifts, and the allowed range is what ISO can write (years 0001-9999).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000

#: The smallest and largest `occurred_at` that ISO-8601 (years 0001-9999) can express.
MIN_MILLIS = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_MS
MAX_MILLIS = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * _DAY_MS - 1

# ASCII digits only: `\d` would also accept other scripts' digits.
_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_iso_millis(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp with an explicit offset (`Z` or `+hh:mm`).

    A time without an offset is refused rather than guessed. Digits beyond milliseconds are
    floored, like every other rounding in the program. Raises ValueError with the reason.
    """
    quick = _quick_utc_seconds(text)
    return quick if quick is not None else _parse(text)


def _parse(text: str) -> int:
    m = _ISO.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not an ISO-8601 UTC timestamp like 2026-10-05T12:00:00Z")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    try:
        ordinal = date(int(year), int(month), int(day)).toordinal()
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"{text!r}: time of day out of range")
    millis = (ordinal - _EPOCH_ORDINAL) * _DAY_MS + ((h * 60 + mi) * 60 + s) * 1000
    if fraction:
        millis += int((fraction + "00")[:3])
    if offset not in ("Z", "z"):
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"{text!r}: offset out of range")
        shift = (oh * 60 + om) * 60_000
        millis -= shift if offset[0] == "+" else -shift
    if not MIN_MILLIS <= millis <= MAX_MILLIS:
        raise ValueError(f"{text!r}: outside years 0001-9999 in UTC")
    return millis


_DAY_STARTS: dict[str, int | None] = {}


def _quick_utc_seconds(text: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SSZ`, the form every file and tool writes (`format_iso_millis`), without
    the regular expression: the day from a memo of its first instant (parsed the full way once),
    the time of day by hand. None for anything else, or anything out of range: the full parse
    decides, and raises its own error. The same value as the full parse for every text it takes."""
    if (type(text) is not str or len(text) != 20 or text[19] != "Z" or text[10] != "T" or text[13] != ":"
            or text[16] != ":" or not text.isascii()):
        return None
    hh, mm, ss = text[11:13], text[14:16], text[17:19]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):   # ASCII: digits 0-9 only
        return None
    h, mi, s = int(hh), int(mm), int(ss)
    if h > 23 or mi > 59 or s > 59:
        return None
    day = text[:10]
    start = _DAY_STARTS.get(day, -1)
    if start == -1:
        try:
            start = _parse(day + "T00:00:00Z") if day[4] == "-" and day[7] == "-" else None
        except ValueError:
            start = None
        if len(_DAY_STARTS) > 100_000:
            _DAY_STARTS.clear()
        _DAY_STARTS[day] = start
    if start is None:
        return None
    return start + ((h * 60 + mi) * 60 + s) * 1000


def format_iso_millis(millis: int) -> str:
    """The canonical text of a time: UTC with `Z`, seconds unless there are milliseconds."""
    if not MIN_MILLIS <= millis <= MAX_MILLIS:
        raise ValueError(f"{millis} ms is outside years 0001-9999")
    seconds, ms = divmod(millis, 1000)
    t = _EPOCH + timedelta(seconds=seconds)
    # f-string rather than strftime: strftime("%Y") does not zero-pad years below 1000 on glibc.
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def datetime_to_millis(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime (floored); a naive one is refused, not assumed UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a datetime without tzinfo is ambiguous; use UTC")
    delta = value - _EPOCH
    millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if not MIN_MILLIS <= millis <= MAX_MILLIS:
        raise ValueError("outside years 0001-9999 in UTC")
    return millis
