"""``tables.cache.TableCache``: what it keeps across batches stays bounded by the fleet."""

from __future__ import annotations

from types import SimpleNamespace

from tables.cache import LOGS, TableCache
from tables.chunks import CHUNK, SEP, Chunk


class MemoryTable:
    """A Faust table's in-memory store: raw keys to raw values."""

    def __init__(self) -> None:
        self.data = SimpleNamespace(data={})


class StoreWriter:
    """Writes values to the tables' stores at once (the worker's writer does so at ``send``)."""

    def __init__(self, tables: dict[str, MemoryTable]) -> None:
        self.tables = tables

    def put(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.tables[table].data.data[key] = value

    def discard(self) -> None:
        pass


def test_full_chunks_and_event_ids_are_dropped_once_written_and_read_back_from_the_store():
    tables = {name: MemoryTable() for name in ("dpu-days", "event-ids")}
    db = TableCache(tables, StoreWriter(tables))
    db.begin(1)
    full, growing = Chunk(), Chunk()
    for i in range(CHUNK):
        full.set(i, (i, 1))
    growing.set(0, (CHUNK, 1))
    db.store("dpu-days", f"dpu-1{SEP}0", full)
    db.store("dpu-days", f"dpu-1{SEP}1", growing)
    db.store("event-ids", f"dpu-1{SEP}e-1", [0, 7])
    db.write(LOGS)

    assert db.load("dpu-days", f"dpu-1{SEP}1") is growing, "the chunk appended to is kept"
    reloaded = db.load("dpu-days", f"dpu-1{SEP}0")
    assert reloaded is not full and reloaded.items == full.items, "read back from the store"
    assert db.load("event-ids", f"dpu-1{SEP}e-1") == [0, 7]
