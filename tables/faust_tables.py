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

from pipeline.app import app, cfg
from pipeline.topics import TABLES as TABLE_NAMES, topic_configs
from tables.fenced import Epochs, FencedTable, verify_send_changelog

MEMTABLE_BYTES = 4 << 20
"""RocksDB write buffer per table partition (two of them at most)."""
BLOCK_CACHE_BYTES = 8 << 20
"""RocksDB block cache per table partition."""


verify_send_changelog()
EPOCHS = Epochs(app)
"""This worker's changelog epochs, shared by every table."""


def _table(name: str, help: str):
    """A table of bytes, its RocksDB memory bounded per partition store.

    Faust's defaults give each store three 64 MiB memtables and a 2 GiB block cache, and each
    table partition is a store of its own (24 here): in the million-event bench the worker held
    350 MiB of unflushed memtables after 200,000 events, its RSS still climbing. These bound
    the stores at about 16 MiB each; RocksDB flushes and compacts in its own threads. Its
    changelog records carry the writer's epoch (``tables.fenced``).
    """
    options = {"write_buffer_size": MEMTABLE_BYTES, "max_write_buffer_number": 2,
               "block_cache_size": BLOCK_CACHE_BYTES}  # Faust's store takes the dict over
    table = FencedTable(app, name=name, beacon=app.tables.beacon, help=help, key_type=bytes,
                        value_type=bytes, options=options, extra_topic_configs=topic_configs(cfg))
    table.epochs = EPOCHS
    return app.tables.add(table)


TABLES = {
    "dpus": _table("dpus", "DpuState per dpu_id"),
    "dpu-days": _table("dpu-days", "[instant, direction] of each counted event, 'dpu_id<US>day'"),
    "event-ids": _table("event-ids", "first source [partition, offset], 'dpu_id<US>event_id'"),
    "spaces": _table("spaces", "SpaceState per space_id"),
    "space-days": _table("space-days",
                         "net delta per instant since the latest reset, 'space_id<US>day'"),
    "daily-resets": _table("daily-resets", "DailySchedule per space_id"),
}
assert tuple(TABLES) == TABLE_NAMES, "ensure_topics creates the changelogs of TABLE_NAMES"
dpus, spaces, daily_resets = TABLES["dpus"], TABLES["spaces"], TABLES["daily-resets"]
LOGS = frozenset({"dpu-days", "event-ids", "space-days", "daily-resets"})
"""Tables whose slots a state value points into (written first)."""
STATES = frozenset({"dpus", "spaces"})
"""Tables whose values record which source offsets were applied (written last)."""


_ABSENT = object()


class BatchStore:
    """The tables as a :class:`tables.counting.Store`, written back once per key per batch.

    Within a batch a key is decoded once and encoded once, and its changelog gets one record
    instead of one per event. The changed keys are written in two phases (``write_logs``, then
    ``write_states``), each key with the last event that changed it made current, so the write
    lands in that key's partition. A record's writes can be taken back (``undo_record``) and a
    whole batch's dropped (``discard``) before anything is written.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], Any] = {}
        self._dirty: dict[tuple[str, str], EventT] = {}
        self._event: EventT | None = None
        self._undo: dict[tuple[str, str], tuple[Any, Any]] = {}

    def use(self, event: EventT) -> None:
        """The event whose processing the next writes belong to (and can be undone)."""
        self._event = event
        self._undo = {}

    def load(self, table: str, key: str) -> Any:
        slot = (table, key)
        if slot not in self._values:
            self._values[slot] = load(TABLES[table], key)
        return self._values[slot]

    def store(self, table: str, key: str, value: Any) -> None:
        slot = (table, key)
        if slot not in self._undo:
            self._undo[slot] = (self._values.get(slot, _ABSENT), self._dirty.get(slot, _ABSENT))
        self._values[slot] = value
        self._dirty[slot] = self._event

    def delete(self, table: str, key: str) -> None:
        self.store(table, key, None)

    def undo_record(self) -> None:
        """Take back every write of the current event (it failed half-way)."""
        for slot, (value, event) in self._undo.items():
            if value is _ABSENT:
                self._values.pop(slot, None)
            else:
                self._values[slot] = value
            if event is _ABSENT:
                self._dirty.pop(slot, None)
            else:
                self._dirty[slot] = event
        self._undo = {}

    def changed(self) -> bool:
        return bool(self._dirty)

    def write_logs(self) -> None:
        """Write the changed logs: the slots states point into (acknowledge them before
        ``write_states``)."""
        self._write(LOGS)

    def write_states(self) -> None:
        """Write the changed states, which say which records were applied, and end the batch.

        Written only once the logs and outputs are acknowledged: a worker killed in between
        leaves a state that has not applied the batch (its records come again and rewrite the
        same log slots) or one whose logs and outputs are all there, never a state marking
        records applied whose log entries or outputs were lost.
        """
        self._write(STATES)
        self.discard()

    def discard(self) -> None:
        """Forget the batch's changes, written or not."""
        self._values.clear()
        self._dirty.clear()
        self._undo = {}

    def _write(self, phase: frozenset[str]) -> None:
        for (table, key), event in self._dirty.items():
            if table not in phase:
                continue
            value = self._values[(table, key)]
            with processing(event):
                if value is None:
                    TABLES[table].pop(key.encode(), None)
                else:
                    TABLES[table][key.encode()] = orjson.dumps(value)


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
