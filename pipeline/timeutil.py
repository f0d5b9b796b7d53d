"""Instants as integer microseconds since the Unix epoch, UTC.

Integers compare and hash exactly (no float rounding at a reset instant), serialize compactly in
table values, and map one-to-one onto PostgreSQL ``timestamptz`` (microsecond resolution).

Every instant read from outside goes through :func:`parse_ts`, which accepts only
``MIN_US <= t <= MAX_US``: whatever it returns, :func:`iso` and :func:`from_us` can render, with
room left for a series bucket or a time zone offset on top.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = 1_000_000
DAY_US = 86_400 * US

MIN_US = 0
"""Earliest instant accepted anywhere, 1970-01-01T00:00:00Z (SPEC §3)."""
MAX_US = (datetime(9999, 12, 31, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)
"""Latest instant accepted anywhere, 9999-12-31T00:00:00Z: a day short of what ``datetime``
holds, so that a bucket edge or a local time computed from it still exists. Records have the
tighter bound of ``now`` plus ``max_future_s`` (see ``pipeline.models.valid_instant``)."""
MIN_TEXT = "1970-01-01T00:00:00Z"
MAX_TEXT = "9999-12-31T00:00:00Z"


def day_of(ts: int) -> int:
    """The UTC day number of an instant (days since the epoch)."""
    return ts // DAY_US


class BadTimestamp(ValueError):
    """Not an instant we can read, or one outside ``MIN_US..MAX_US``."""


class TooLate(BadTimestamp):
    """An instant after ``MAX_US`` (records say "ahead of the clock" instead)."""


def parse_ts(value: object, name: str = "timestamp") -> int:
    """ISO 8601 text to epoch microseconds; a timestamp without an offset is UTC (SPEC §3).

    Raises only :class:`BadTimestamp`, whose message starts with ``name``, for any input: also
    for instants before ``MIN_US`` or after ``MAX_US``.
    """
    if not isinstance(value, str):
        raise BadTimestamp(f"{name} must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise BadTimestamp(f"{name} is empty")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:  # UnicodeError (lone surrogates) is a ValueError too
        raise BadTimestamp(f"{name}: unparsable timestamp {value[:64]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Aware subtraction is timedelta arithmetic: 0001-01-01T00:00+23:59 (before year 1 in UTC)
    # and 9999-12-31T23:59-23:59 (after year 9999) subtract fine; only their rendering would not.
    us = to_us(dt)
    if us < MIN_US:
        raise BadTimestamp(f"{name} is before {MIN_TEXT}")
    if us > MAX_US:
        raise TooLate(f"{name} is after {MAX_TEXT}")
    return us


def clamped(us: int) -> int:
    """``us`` brought within ``MIN_US..MAX_US``: for instants no one validated (a Kafka
    record's timestamp, which a producer sets to anything) that must still be stored."""
    return min(max(us, MIN_US), MAX_US)


def to_us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> datetime:
    """The aware UTC datetime of an instant; :class:`BadTimestamp` outside the years 1..9999."""
    try:
        return EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise BadTimestamp(f"instant {us} µs from the epoch is outside the years 1 to 9999") \
            from None


def iso(us: int | None) -> str | None:
    """Epoch microseconds to ISO 8601 UTC text with a ``Z`` (milliseconds unless finer)."""
    if us is None:
        return None
    dt = from_us(us)
    # Formatted by hand: strftime writes year 999 as "999", not "0999".
    frac = f"{dt.microsecond:06d}" if us % 1000 else f"{dt.microsecond // 1000:03d}"
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{frac}Z")


def now_us() -> int:
    return time.time_ns() // 1000
