"""Instants as integer microseconds since the Unix epoch, UTC.

Integers compare and hash exactly (no float rounding at a reset instant), serialize compactly in
table values, and map one-to-one onto PostgreSQL ``timestamptz`` (microsecond resolution).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = 1_000_000
DAY_US = 86_400 * US


def day_of(ts: int) -> int:
    """The UTC day number of an instant (days since the epoch)."""
    return ts // DAY_US


class BadTimestamp(ValueError):
    """Not an instant we can read."""


def parse_ts(value: object) -> int:
    """ISO 8601 text to epoch microseconds; a timestamp without an offset is UTC (SPEC §3)."""
    if not isinstance(value, str):
        raise BadTimestamp(f"timestamp must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise BadTimestamp("timestamp is empty")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BadTimestamp(f"unparsable timestamp {value[:64]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return to_us(dt)


def to_us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(us: int | None) -> str | None:
    """Epoch microseconds to ISO 8601 UTC text with a ``Z`` (milliseconds unless finer)."""
    if us is None:
        return None
    dt = from_us(us)
    if us % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def now_us() -> int:
    return time.time_ns() // 1000
