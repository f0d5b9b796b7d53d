"""The Faust tables (changelog-backed, RocksDB by default); ``tables.cache`` writes them.

Keys and values are bytes on the wire ("raw"): a key's bytes are exactly the bytes producers key
records with, so Faust's router hashes a table key to the same partition as the records. Values
are the JSON-able structures of ``tables/``, encoded with orjson: compact in the changelog and
fast to decode on every event.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterable, Iterator, TypeVar

import orjson

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


def load(table, key: str) -> Any:
    """The decoded value of ``key``, or None (the partition found by Faust)."""
    raw = table.get(key.encode())
    return None if raw is None else orjson.loads(raw)


def items(table) -> Iterator[tuple[str, Any]]:
    """Every key of the partitions this worker holds, with its decoded value."""
    for key, raw in table.items():
        yield key.decode(), orjson.loads(raw)


YIELD_EVERY = 250
"""Values taken between two turns of the event loop by ``paced``. The health scan decodes each
value: 2,000 of them held the loop 35 ms at a time, and every record being counted waited."""
T = TypeVar("T")


async def paced(values: Iterable[T]) -> AsyncIterator[T]:
    """``values``, with a turn of the event loop every ``YIELD_EVERY``: a pass over every key of
    a large fleet's table (a listing, the health scan) never stalls the agents."""
    for i, value in enumerate(values):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        yield value
