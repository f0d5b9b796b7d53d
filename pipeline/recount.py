"""The recount of ``dpu replay``: the agents' counting logic over every input record, in memory.

The records are counted in the order that makes every attribution final at once: placements,
resets, then events, each event's deltas applied to its spaces at once. Placements and resets
go through ``tables.counting`` as the agents call it. Events, nearly all of the records, go
through :func:`count_events`: ``on_event`` then ``on_delta`` for the case a fresh recount
always meets (each record new to its DPU and its spaces), written out in one loop over plain
dicts. Anything else is handed to the agents' functions; ``tests/test_recount.py`` checks
that both give the same tables and history, value for value.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from pipeline.inputs import kafka_us, read_event, read_placement, read_reset
from pipeline.models import Reject
from pipeline.settings import Settings
from pipeline.timeutil import DAY_US, now_us
from pipeline.topics import Partitioner
from tables import counting
from tables.chunks import CHUNK, SEP, Chunk
from tables.dpu_state import DpuState
from tables.space_state import SpaceState


@dataclass
class MemoryTables:
    """The tables as a :class:`tables.store.Store` in memory, each key kept with the partition
    the record that wrote it came from (where a worker keeps it)."""

    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    partition_of: dict[tuple[str, str], int] = field(default_factory=dict)
    partition: int = 0

    def use(self, partition: int) -> None:
        self.partition = partition

    def load(self, table: str, key: str) -> Any:
        return self.values.get((table, key))

    def store(self, table: str, key: str, value: Any) -> None:
        self.values[(table, key)] = value
        self.partition_of[(table, key)] = self.partition

    def delete(self, table: str, key: str) -> None:
        self.store(table, key, None)


@dataclass
class Recount:
    """What the counting logic makes of every input record."""

    tables: MemoryTables
    history: list[list]
    """``space_count`` rows: ``[space, ts, dpu, delta, entries, exits, count_on_arrival,
    counted_on_arrival, source, partition, offset, seq]``."""
    rejected: int = 0
    """Input records refused (already filed in ``dpu_rejects`` by the first count)."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cycle collection while counting: every object made is kept (the tables) or freed by
    its reference count, and with millions alive each full collection scanned them all (a
    million events took 77 s to count with the collector on, 43 s without). What is left
    is frozen out of later collections: the first one after would have scanned it all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def recount(placements: Iterable, resets: Iterable, events: Iterable, settings: Settings,
            now: int | None = None, events_counter: Callable | None = None) -> Recount:
    """Run the agents' counting logic over every input record (as ``pipeline.inputs`` reads
    them), in the order that needs no correction: placements, resets, then events with their
    deltas. ``events_counter``: what counts the events (:func:`count_events`, or
    :func:`count_events_one_by_one` as the agents do, for the tests to compare)."""
    now = now_us() if now is None else now
    db = MemoryTables()
    space_partition = Partitioner(settings.partitions)
    result = Recount(db, [])
    deltas = _delta_applier(db, result, space_partition, now)
    with collector_paused():
        _each(placements, read_placement, lambda p, src: deltas(counting.on_placement(db, p, src)),
              db, result, settings, now)
        _each(resets, read_reset, lambda r, src: counting.on_reset(db, r, src, now),
              db, result, settings, now)
        (events_counter or count_events)(db, events, settings, now, result, space_partition)
    return result


def _each(records: Iterable, read: Callable, apply: Callable, db: MemoryTables,
          result: Recount, settings: Settings, now: int) -> None:
    """``apply(item, source)`` to each record ``read`` accepts; the others are counted."""
    for record in records:
        item = read(record, settings, now)
        if isinstance(item, Reject):
            result.rejected += 1
            continue
        db.use(record.partition)
        apply(item, _source(record))


def _source(record) -> counting.Source:
    return counting.Source(record.partition, record.offset, kafka_us(record))


def _delta_applier(db: MemoryTables, result: Recount, space_partition: Partitioner,
                   now: int) -> Callable[[counting.Outcome], None]:
    """Applies an outcome's deltas to their spaces at once, keeping their history rows."""

    def deltas(outcome: counting.Outcome) -> None:
        for out in outcome.out:
            if out.topic != counting.DELTAS:
                continue
            db.use(space_partition(out.key))
            for count in counting.on_delta(db, out.key, out.value, now).out:
                c = count.value
                if c["k"] in ("e", "c"):
                    code, partition, offset, seq = c["src"]
                    result.history.append([c["space"], c["ts"], c["dpu"], c["d"], c["en"],
                                           c["ex"], c["count"], c["counted"], code, partition,
                                           offset, seq])
    return deltas


def count_events_one_by_one(db: MemoryTables, events: Iterable, settings: Settings, now: int,
                            result: Recount, space_partition: Partitioner) -> None:
    """Each event through ``counting.on_event`` and its deltas through ``on_delta``."""
    deltas = _delta_applier(db, result, space_partition, now)
    _each(events, read_event, lambda e, src: deltas(counting.on_event(db, e, src)),
          db, result, settings, now)


def count_events(db: MemoryTables, events: Iterable, settings: Settings, now: int,
                 result: Recount, space_partition: Partitioner) -> None:
    """What :func:`count_events_one_by_one` does, about three times faster.

    ``on_event`` and ``on_delta`` for a record new to its DPU and to each of its spaces, which
    is every record of a recount (its events are read once, in offset order): the same
    changes to the same state objects, in the same order, without the records in between
    (``Outcome``, ``Out``, the delta's dict) or a load and a store per change. An event of
    any other case is handed to ``on_event`` and its deltas to ``on_delta``.
    """
    values, partition_of, history = db.values, db.partition_of, result.history
    # id(placement) -> (placement, its day-log pairs, its (space, sign) pairs)
    attributions: dict[int, tuple] = {}
    general = _delta_applier(db, result, space_partition, now)

    def log(table: str, base: str, length: int, item: tuple, partition: int) -> None:
        slot = (table, f"{base}{SEP}{length // CHUNK}")
        chunk = values.get(slot)
        if chunk is None:
            chunk = values[slot] = Chunk()
        if length % CHUNK == len(chunk.items):
            chunk.items.append(item)  # encoded when written (``Chunk.to_bytes``)
        else:
            chunk.set(length % CHUNK, item)
        partition_of[slot] = partition

    for record in events:
        e = read_event(record, settings, now)
        if isinstance(e, Reject):
            result.rejected += 1
            continue
        p, o, dpu, ts, direction = record.partition, record.offset, e.dpu_id, e.ts, e.direction
        source = f"e:{p}"
        dpu_slot = ("dpus", dpu)
        state = values.get(dpu_slot)
        if state is None:
            state = DpuState(dpu)
        elif state.maybe_applied(source, o):
            db.use(p)
            general(counting.on_event(db, e, _source(record)))
            continue
        if e.event_id is not None:
            id_slot = ("event-ids", f"{dpu}{SEP}{e.event_id}")
            if values.get(id_slot) is not None:  # first seen at a lower offset: a copy
                state.mark_applied(source, o)
                values[dpu_slot], partition_of[dpu_slot] = state, p
                continue
            values[id_slot], partition_of[id_slot] = [p, o], p
        placement = state.placements.valid_at(ts)
        known = attributions.get(id(placement))
        if known is None:
            signs = placement.spaces if placement else ()
            known = attributions[id(placement)] = (
                placement, counting.sign_pairs(signs), [(s.space_id, s.direction) for s in signs])
        _, pairs, signs = known
        state.count_event(ts, direction)
        day = ts // DAY_US
        length = state.days.get(day, 0)
        log("dpu-days", f"{dpu}{SEP}{day}", length, (ts, direction, p, o, pairs), p)
        state.days[day] = length + 1
        state.mark_applied(source, o)
        values[dpu_slot], partition_of[dpu_slot] = state, p
        for i, (space, sign) in enumerate(signs):
            d = direction * sign
            space_slot = ("spaces", space)
            space_state = values.get(space_slot)
            if space_state is None:
                space_state = SpaceState(space)
            elif space_state.maybe_applied(source, o, i):
                general(counting.Outcome([counting.Out(counting.DELTAS, space, {
                    "k": "e", "ts": ts, "d": d, "dpu": dpu, "src": ["e", p, o, i]})]))
                continue
            part = space_partition(space)
            space_state.mark_applied(source, o, i)
            space_state.updated_at = now
            logged = space_state.add_delta(ts, d)  # None: the latest reset absorbed it
            counted = logged is not None
            if counted:
                log("space-days", f"{space}{SEP}{day}", logged[1], (ts, d, ("e", p, o, i)), part)
            values[space_slot], partition_of[space_slot] = space_state, part
            history.append([space, ts, dpu, d, d if d > 0 else 0, -d if d < 0 else 0,
                            space_state.count, counted, "e", p, o, i])
