"""Time as Tidings stores it: integer microseconds since the Unix epoch, UTC.

Storing integers keeps the two databases alike (no time zone or driver conversions) and makes
queue comparisons cheap. Dates cross the API as ISO 8601, with or without the ``T``, with or
without a fraction and a zone (no zone means UTC), as Adobe's API accepts them.
"""

from __future__ import annotations

import datetime as dt
import functools
import time

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """The current time in microseconds."""
    return time.time_ns() // 1000


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 date or date-time into microseconds; raise ``ValueError`` if invalid."""
    value = text.strip()
    if not value or len(value) > 40:
        raise ValueError("not an ISO 8601 date")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_datetime(us: int) -> dt.datetime:
    """Microseconds to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=us)


def format_iso(us: int) -> str:
    """``2017-12-01T08:00:00.768Z``: UTC, millisecond precision."""
    seconds, micro = divmod(us, 1_000_000)
    return f"{_iso_seconds(seconds)}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=64)
def _iso_seconds(seconds: int) -> str:
    return f"{to_datetime(seconds * 1_000_000):%Y-%m-%dT%H:%M:%S}"


def format_adobe(us: int) -> str:
    """``2017-12-01 08:00:00.768Z``: the form Adobe's examples use, without the ``T``."""
    d = to_datetime(us)
    return f"{d:%Y-%m-%d %H:%M:%S}.{d.microsecond // 1000:03d}Z"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_rfc5322(us: int) -> str:
    """``Mon, 23 Nov 2026 08:55:27 +0000``: an email ``Date`` header (English names, always)."""
    d = to_datetime(us)
    return f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year} {d:%H:%M:%S} +0000"
