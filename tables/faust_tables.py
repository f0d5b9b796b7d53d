"""The Faust tables (changelog-backed, RocksDB by default), seen as one :class:`Store`.

Keys and values are bytes on the wire ("raw"): a key's bytes are exactly the bytes producers key
records with, so Faust's router hashes a table key to the same partition as the records. Values
are the JSON-able structures of ``tables/``, encoded with orjson: compact in the changelog and
fast to decode on every event.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import orjson
from faust.streams import _current_event
from faust.types import EventT

from pipeline.app import app

_RAW = dict(key_type=bytes, value_type=bytes)

TABLES = {
    "dpus": app.Table("dpus", **_RAW, help="DpuState per dpu_id"),
    "dpu-days": app.Table("dpu-days", **_RAW,
                          help="[instant, direction] of each counted event, 'dpu_id<US>day'"),
    "event-ids": app.Table("event-ids", **_RAW,
                           help="first source [partition, offset], 'dpu_id<US>event_id'"),
    "spaces": app.Table("spaces", **_RAW, help="SpaceState per space_id"),
    "space-days": app.Table("space-days", **_RAW,
                            help="net delta per instant since the latest reset, 'space_id<US>day'"),
    "daily-resets": app.Table("daily-resets", **_RAW, help="DailySchedule per space_id"),
}
dpus, spaces, daily_resets = TABLES["dpus"], TABLES["spaces"], TABLES["daily-resets"]


class FaustStore:
    """The tables as a :class:`tables.counting.Store` (writes need a current event)."""

    def load(self, table: str, key: str) -> Any:
        return load(TABLES[table], key)

    def store(self, table: str, key: str, value: Any) -> None:
        TABLES[table][key.encode()] = orjson.dumps(value)

    def delete(self, table: str, key: str) -> None:
        TABLES[table].pop(key.encode(), None)


def load(table, key: str) -> Any:
    """The decoded value of ``key``, or None."""
    raw = table.get(key.encode())
    return None if raw is None else orjson.loads(raw)


def items(table) -> Iterator[tuple[str, Any]]:
    for key, raw in table.items():
        yield key.decode(), orjson.loads(raw)


@contextmanager
def processing(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event while one event of a batch is handled.

    Faust picks a table write's changelog partition and RocksDB partition store from the current
    event. Batches from ``take_events`` mix partitions, so each event is made current in turn:
    every key is then kept in the partition its records arrive on, the same on every restore.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
