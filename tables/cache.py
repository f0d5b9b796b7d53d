"""The Faust tables as the counting agents use them: decoded values kept across batches, and the
changed ones written back once per batch, in bulk.

Decoding a DPU's or a space's value at every batch and encoding it back cost more than counting
its events (most keys see one event per batch in a fleet of thousands). :class:`TableCache`
decodes a value when it is first loaded and keeps it, changed in place by the counting logic;
a batch writes each key it changed once. The cache is the tables' truth only while nothing else
writes them: it is dropped when the group generation changes (partitions moved, tables
restored) and whenever a batch is given up or fails (its changes were made in place).

:class:`ChangelogWriter` writes those values: into the partition's local store, and into one
Kafka batch per changelog partition instead of one Faust ``send_soon`` per key (tens of µs
each). Records carry their writer's epoch (``tables.fenced``); once Kafka acknowledged them,
each store records the changelog offset it holds, as Faust's ``_on_changelog_sent`` does, for
recovery to start from.
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import orjson
import rocksdict
from faust.streams import _current_event

from tables.fenced import EPOCH_HEADER, Epochs
from tables.store import decode, settled, to_bytes

LOGS = frozenset({"dpu-days", "event-ids", "space-days", "daily-resets"})
"""Tables whose slots a state value points into (written first)."""
STATES = frozenset({"dpus", "spaces"})
"""Tables whose values record which source offsets were applied (written last)."""


class _Message:
    __slots__ = ("topic", "partition")

    def __init__(self, partition: int) -> None:
        self.topic, self.partition = "", partition


class _InPartition:
    """What Faust's stores take the current event for: only its partition is read."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def in_partition(partition: int) -> Iterator[None]:
    """Table reads and writes go to ``partition``'s store (Faust's RocksDB store picks the
    partition from the current event)."""
    current = _InPartition(partition)
    token = _current_event.set(weakref.ref(current))
    try:
        yield
    finally:
        _current_event.reset(token)


def _rocksdb(store) -> bool:
    return hasattr(store, "_db_for_partition")


def get(table, partition: int, key: bytes) -> bytes | None:
    """The raw value of ``key`` in ``partition`` of a Faust table, or None."""
    store = table.data
    with in_partition(partition):
        return store._get(key) if _rocksdb(store) else store.data.get(key)


def _write_batch(store):
    """A RocksDB write batch for ``store``, or None when it is not a rocksdict store."""
    if not (_rocksdb(store) and getattr(store, "use_rocksdict", False)):
        return None
    return rocksdict.WriteBatch(raw_mode=True)


def put(table, partition: int, key: bytes, value: bytes | None) -> None:
    """Write (or with None delete) ``key`` in the local store of ``partition``."""
    store = table.data
    with in_partition(partition):
        if _rocksdb(store):
            if value is None:
                store._del(key)
            else:
                store._set(key, value)
        elif value is None:
            store.data.pop(key, None)
        else:
            store.data[key] = value


class ChangelogWriter:
    """Changed table values, written to the local stores and sent to the changelogs in bulk."""

    def __init__(self, tables: dict[str, Any], epochs: Epochs, producer: Callable[[], Any]):
        self.tables = tables
        self.epochs = epochs
        self.producer = producer
        """The aiokafka producer the changelog batches go through."""
        self._builders: dict[tuple[str, int], list] = {}
        """Kafka batches being filled, per (table, partition), with their record counts."""
        self._local: dict[tuple[str, int], Any] = {}
        """RocksDB write batches being filled, per (table, partition) (see ``write_local``)."""

    def put(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        slot = (table, partition)
        store = self.tables[table].data
        if value is None:
            self.write_local()  # Faust deletes a key from every partition's store, in order
            put(self.tables[table], partition, key, value)
        else:
            if slot not in self._local:
                self._local[slot] = _write_batch(store)
            local = self._local[slot]
            if local is None:
                put(self.tables[table], partition, key, value)
            else:
                local.put(key, value)
                store._key_index[key] = partition  # as Faust's own ``_set``
        builders = self._builders.get(slot)
        if builders is None:
            topic = self.tables[table].changelog_topic.get_topic_name()
            epoch = str(self.epochs.writing(topic, partition)).encode()
            builders = self._builders[slot] = [[self.producer().create_batch(), 0, epoch]]
        entry = builders[-1]
        if entry[0].append(timestamp=None, key=key, value=value,
                           headers=[(EPOCH_HEADER, entry[2])]) is None:
            entry = [self.producer().create_batch(), 0, entry[2]]
            builders.append(entry)
            if entry[0].append(timestamp=None, key=key, value=value,
                               headers=[(EPOCH_HEADER, entry[2])]) is None:
                raise ValueError(f"a value of {len(value or b'')} bytes for table {table} "
                                 "does not fit in a Kafka batch")
        entry[1] += 1

    def write_local(self) -> None:
        """Apply the local writes batched so far: one RocksDB write per store and partition
        instead of one per key (each its own WAL append)."""
        for (table, partition), local in self._local.items():
            if local is not None:
                self.tables[table].data._db_for_partition(partition).write(local)
        self._local.clear()

    async def send(self) -> "asyncio.Future[None]":
        """Submit every batch built so far. The future returned is done once Kafka has
        acknowledged them all and each store recorded the changelog offset it holds."""
        self.write_local()  # the local stores never lag behind what their changelogs get
        sent = []
        producer = self.producer()
        for (table, partition), builders in self._builders.items():
            changelog = self.tables[table].changelog_topic.get_topic_name()
            for builder, n, _ in builders:
                builder.close()
                future = await producer.send_batch(builder, changelog, partition=partition)
                sent.append((table, future, n))
        self._builders.clear()
        return asyncio.ensure_future(self._acknowledged(sent))

    def discard(self) -> None:
        """Forget batches not yet submitted (their local writes are dropped by a restore)."""
        self._builders.clear()
        self._local.clear()

    async def _acknowledged(self, sent: list) -> None:
        for table, future, n in sent:
            meta = await future
            self.tables[table].data.set_persisted_offset(meta.topic_partition,
                                                         meta.offset + n - 1)


class TableCache:
    """The tables as a :class:`tables.store.Store`: values decoded once, kept across batches,
    and each changed key written once per batch (see the module). Values no batch is likely to
    read again (``tables.store.settled``) are dropped once written."""

    def __init__(self, tables: dict[str, Any], writer: ChangelogWriter,
                 max_values: int = 200_000) -> None:
        self.tables = tables
        self.writer = writer
        self.max_values = max_values
        """Values kept at most; beyond, the cache starts afresh at the next batch."""
        self.partition = 0
        """The partition of the record being counted: its writes go there."""
        self._values: dict[tuple[str, str], Any] = {}
        self._dirty: dict[tuple[str, str], int] = {}
        self._generation: int | None = None

    def begin(self, generation: int) -> None:
        """A batch starts in consumer group ``generation``."""
        if generation != self._generation or len(self._values) > self.max_values:
            self._values.clear()
            self._generation = generation

    def use(self, partition: int) -> None:
        self.partition = partition

    def load(self, table: str, key: str) -> Any:
        slot = (table, key)
        try:
            return self._values[slot]
        except KeyError:
            raw = get(self.tables[table], self.partition, key.encode())
            value = self._values[slot] = decode(table, key,
                                                None if raw is None else orjson.loads(raw))
            return value

    def store(self, table: str, key: str, value: Any) -> None:
        slot = (table, key)
        self._values[slot] = value
        self._dirty[slot] = self.partition

    def delete(self, table: str, key: str) -> None:
        self.store(table, key, None)

    def changed(self) -> bool:
        return bool(self._dirty)

    def write(self, phase: frozenset[str]) -> None:
        """Hand the changed values of ``phase``'s tables to the writer (``writer.send`` writes
        them to the local stores and sends them to the changelogs)."""
        put = self.writer.put
        done = []
        for slot, partition in self._dirty.items():
            table, key = slot
            if table in phase:
                value = self._values[slot]
                put(table, partition, key.encode(),
                    None if value is None else to_bytes(table, value))
                done.append(slot)
        values = self._values
        for slot in done:
            del self._dirty[slot]
            if settled(slot[0], values[slot]):
                del values[slot]  # in the store once ``writer.send`` ran, if ever needed

    def discard(self) -> None:
        """Forget every value kept and every change not yet written: the batch was given up
        or failed, and its changes were made in place."""
        self._values.clear()
        self._dirty.clear()
        self.writer.discard()

