"""Answers about the past, from PostgreSQL: ``count(S, T)`` and per-bucket series (SPEC §2, §5).

``count(S, T)`` = the latest reset at or before ``T`` (else 0) plus every delta after it up to
``T``. Whole days come from ``space_count_daily``, whole hours at the two ends of the day range
from ``space_count_hourly``, and only the partial hours at the very ends from ``space_count``
rows: an answer reads one row per day since the latest reset plus at most 46 hourly rows and two
hours of raw rows, however long the history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from pipeline.timeutil import US, from_us, iso, to_us

SPACE_COUNT_COLUMNS = ("space_id", "event_ts", "dpu_id", "delta", "entries", "exits",
                       "count_on_arrival", "counted_on_arrival", "source", "source_partition",
                       "source_offset", "seq")
"""The columns of a ``space_count`` row as the sink stages it and the rebuild writes it (the
reconciled count comes after them)."""
SPACE_COUNT_TYPES = ("text", "us", "text", "int", "int", "int", "int", "bool", "text", "int",
                     "int", "int")
"""Their types, as ``sinks.copy_text.CopyRow`` encodes them."""
RECONCILED_COLUMNS = ("count_reconciled", "reconciled_at")
RECONCILED_TYPES = ("int", "us")
"""The reconciled count and when it was set, after them: written with the row when it is
already known (the sink's rows in time order, every row of a rebuild), else by the reconciler."""

HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
MAX_POINTS = 5000
"""Largest number of buckets one series request may ask for."""


class BadQuery(ValueError):
    """A parameter a user gave makes no sense (answered with 400)."""


def _floor(ts: int, size: int) -> int:
    return ts - ts % size


def _ceil(ts: int, size: int) -> int:
    return -_floor(-ts, size)


def plan(lo: int | None, hi: int) -> list[tuple[str, int | None, int]]:
    """How to sum the deltas of events with ``lo < ts <= hi`` (``lo`` None: no lower bound).

    Returns ``(source, a, b)`` parts: ``("raw", a, b)`` sums rows with ``a < ts <= b``;
    ``("hour"|"day", a, b)`` sums rollup buckets starting in ``[a, b)``, each wholly inside.
    """
    first = None if lo is None else _ceil(lo + 1, HOUR_US)  # first hour wholly after lo
    last = _floor(hi + 1, HOUR_US)  # end of the last hour wholly at or before hi
    if first is not None and first >= last:
        return [("raw", lo, hi)]
    parts: list[tuple[str, int | None, int]] = []
    if lo is not None:
        parts.append(("raw", lo, first - 1))
    day_first = None if first is None else _ceil(first, DAY_US)
    day_last = _floor(last, DAY_US)
    if day_first is None or day_first < day_last:
        if first is not None:
            parts.append(("hour", first, day_first))
        parts += [("day", day_first, day_last), ("hour", day_last, last)]
    else:
        parts.append(("hour", first, last))
    parts.append(("raw", last - 1, hi))
    return [p for p in parts if p[1] is None or p[1] < p[2]]


async def is_known(conn: psycopg.AsyncConnection, space_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM spaces WHERE space_id = %s", (space_id,))
    return await cur.fetchone() is not None


async def latest_reset(conn: psycopg.AsyncConnection, space_id: str,
                       at: int) -> tuple[int, int] | None:
    cur = await conn.execute(
        "SELECT at, count FROM space_resets WHERE space_id = %s AND at <= %s "
        "ORDER BY at DESC LIMIT 1", (space_id, from_us(at)))
    row = await cur.fetchone()
    return (to_us(row[0]), int(row[1])) if row else None


_PART_SQL = {
    "raw": "SELECT COALESCE(sum(delta), 0) FROM space_count WHERE space_id = %s "
           "AND (%s::timestamptz IS NULL OR event_ts > %s) AND event_ts <= %s",
    "hour": "SELECT COALESCE(sum(delta), 0) FROM space_count_hourly WHERE space_id = %s "
            "AND (%s::timestamptz IS NULL OR hour >= %s) AND hour < %s",
    "day": "SELECT COALESCE(sum(delta), 0) FROM space_count_daily WHERE space_id = %s "
           "AND (%s::timestamptz IS NULL OR day >= %s) AND day < %s",
}


async def count_at(conn: psycopg.AsyncConnection, space_id: str, at: int) -> int:
    """``count(space_id, at)`` over the history written so far."""
    reset = await latest_reset(conn, space_id, at)
    total = reset[1] if reset else 0
    for source, a, b in plan(reset[0] if reset else None, at):
        start = from_us(a) if a is not None else None
        cur = await conn.execute(_PART_SQL[source], (space_id, start, start, from_us(b)))
        total += int((await cur.fetchone())[0])
    return total


_BUCKET = re.compile(r"^(\d{1,4})(m|h|d)$")


@dataclass(frozen=True)
class SeriesQuery:
    start: int
    end: int
    bucket: str
    tz: ZoneInfo | None

    def boundaries(self) -> list[int]:
        """Bucket edges from ``start`` to past ``end``: aligned to ``tz``'s wall clock if given."""
        m = _BUCKET.match(self.bucket)
        if not m or int(m.group(1)) == 0:
            raise BadQuery(f"unknown bucket {self.bucket!r}: use a number and m, h or d (15m, 1h, 1d)")
        n, unit = int(m.group(1)), m.group(2)
        if self.start >= self.end:
            raise BadQuery("start must be before end")
        zone = self.tz or ZoneInfo("UTC")
        local = from_us(self.start).astimezone(zone)
        if unit == "d":
            first = local.replace(hour=0, minute=0, second=0, microsecond=0)
            step = lambda t, i: (first.replace(tzinfo=None) + timedelta(days=n * i)).replace(
                tzinfo=zone)
        else:
            size = timedelta(minutes=n) if unit == "m" else timedelta(hours=n)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            offset = (local - midnight) // size
            first = midnight + offset * size
            step = lambda t, i: first + size * i
        edges: list[int] = []
        i = 0
        while True:
            edge = to_us(step(first, i))
            if edges and edge <= edges[-1]:  # a DST jump folded two local times together
                i += 1
                continue
            edges.append(edge)
            if edge >= self.end:
                return edges
            if len(edges) > MAX_POINTS + 1:
                raise BadQuery(f"too many points: more than {MAX_POINTS} buckets")
            i += 1


async def series(conn: psycopg.AsyncConnection, space_id: str, q: SeriesQuery) -> list[dict[str, Any]]:
    """Per bucket: start, entries, exits, count at its end, min and max within it."""
    edges = q.boundaries()
    running = await count_at(conn, space_id, edges[0] - 1)
    cur = await conn.execute(
        "SELECT event_ts, delta, entries, exits, 0 AS kind FROM space_count WHERE space_id = %s "
        "AND event_ts >= %s AND event_ts < %s "
        "UNION ALL SELECT at, count, 0, 0, 1 FROM space_resets WHERE space_id = %s "
        "AND at >= %s AND at < %s ORDER BY 1, 5",
        (space_id, from_us(edges[0]), from_us(edges[-1]), space_id, from_us(edges[0]),
         from_us(edges[-1])))
    changes = await cur.fetchall()
    out: list[dict[str, Any]] = []
    j = 0
    for b0, b1 in zip(edges, edges[1:]):
        entries = exits = 0
        low = high = running
        while j < len(changes) and to_us(changes[j][0]) < b1:
            ts, value, e, x, kind = changes[j]
            if kind == 1:  # a reset absorbs the events at its instant: they sort before it
                running = int(value)
            else:
                running += int(value)
                entries += int(e)
                exits += int(x)
            low, high = min(low, running), max(high, running)
            j += 1
        out.append({"start": iso(b0), "entries": entries, "exits": exits, "count": running,
                    "min": low, "max": high})
    return out


def parse_tz(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except Exception:
        raise BadQuery(f"unknown time zone {name[:64]!r}") from None
