"""The Faust tables (changelog-backed, RocksDB by default) and the codec of their values.

Values are plain JSON-able structures produced by ``DpuState``/``SpaceState.to_value``, encoded
with orjson: compact in the changelog and fast to decode on every event.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import orjson
from faust.streams import _current_event
from faust.types import EventT

from pipeline.app import app


# Keys and values are bytes on the wire ("raw"): a key's bytes are exactly the bytes producers
# key records with, so Faust's router hashes a table key to the same partition as the records.
_RAW = dict(key_type=bytes, value_type=bytes)

dpus = app.Table("dpus", **_RAW, help="DpuState per dpu_id")
event_ids = app.Table("event-ids", **_RAW,
                      help="first source [partition, offset] per 'dpu_id<US>event_id'")
dpu_days = app.Table("dpu-days", **_RAW,
                     help="[instant, direction] of each counted event of one DPU and UTC day, "
                          "'dpu_id<US>day'")
daily_resets = app.Table("daily-resets", **_RAW, help="DailySchedule per space_id")
spaces = app.Table("spaces", **_RAW, help="SpaceState per space_id")
space_days = app.Table("space-days", **_RAW,
                       help="per-instant deltas of one space and UTC day, 'space_id<US>day'")


def load(table, key: str) -> Any:
    """The decoded value of ``key``, or None."""
    raw = table.get(key.encode())
    return None if raw is None else orjson.loads(raw)


def store(table, key: str, value: Any) -> None:
    table[key.encode()] = orjson.dumps(value)


def delete(table, key: str) -> None:
    table.pop(key.encode(), None)


def items(table) -> Iterator[tuple[str, Any]]:
    for key, raw in table.items():
        yield key.decode(), orjson.loads(raw)


KEY_SEP = "\x1f"
"""Separator of composite table keys (ASCII unit separator: never part of a valid id)."""


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
