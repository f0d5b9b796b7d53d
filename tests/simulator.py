"""Runs the real per-record counting logic (``tables/counting.py``) without Kafka, for tests.

Records go through the same two stages as in the workers, with dict tables; the order in which
inputs and in-flight deltas are processed, and redeliveries of records already processed, are
chosen by the caller's random generator: any interleaving Kafka could produce.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from pipeline.models import DpuEvent, Placement, Reset
from tables import counting
from tables.store import decode, to_bytes


class DictStore:
    """Tables of encoded values, as in the changelogs.

    With ``cache``, loaded values are kept and handed out again, changed in place, as the
    workers' ``TableCache`` does; ``verify`` then checks that every value kept equals what was
    stored (a change the logic made without storing it would differ).
    """

    def __init__(self, cache: bool = False) -> None:
        self.tables: dict[str, dict[str, bytes]] = {}
        self.cache: dict[tuple[str, str], Any] | None = {} if cache else None

    def load(self, table: str, key: str) -> Any:
        if self.cache is not None and (table, key) in self.cache:
            return self.cache[(table, key)]
        value = decode(table, key, self.value(table, key))
        if self.cache is not None:
            self.cache[(table, key)] = value
        return value

    def value(self, table: str, key: str) -> Any:
        """The stored (JSON-able) value of ``key``, or None."""
        raw = self.tables.get(table, {}).get(key)
        return None if raw is None else orjson.loads(raw)

    def store(self, table: str, key: str, value: Any) -> None:
        # As in the changelog
        self.tables.setdefault(table, {})[key] = to_bytes(table, value)
        if self.cache is not None:
            self.cache[(table, key)] = value

    def delete(self, table: str, key: str) -> None:
        self.tables.get(table, {}).pop(key, None)
        if self.cache is not None:
            self.cache[(table, key)] = None

    def verify(self) -> None:
        for (table, key), value in (self.cache or {}).items():
            assert (None if value is None else orjson.loads(to_bytes(table, value))) \
                == self.value(table, key), \
                f"{table}[{key!r}] was changed and not stored"

    def forget(self) -> None:
        """Drop the values kept (a restart: they are decoded again from what was stored)."""
        if self.cache is not None:
            self.cache.clear()


@dataclass
class Simulation:
    rng: random.Random
    redeliver: float = 0.1
    """Chance that a processed input is delivered once more later."""
    skip: float = 0.0
    """Chance that an input or delta is skipped and delivered only later, after records that
    followed it (what a consumer that drops a record and reads it again does)."""
    lose_state: float = 0.0
    """Chance that a record's state write is lost after its outputs and log entries were
    written (a kill between the steps of a batch); the record is then read again."""
    db: DictStore = field(default_factory=DictStore)
    history: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    """Space-count records by source, first copy kept: what the space_count sink writes."""
    order: list = field(default_factory=list)
    """Inputs in the order they were first processed."""
    resets: dict[tuple[str, int], Reset] = field(default_factory=dict)
    """Resets by (space, instant): the last one processed wins, as in the sink's upsert."""
    placements: dict[tuple[str, int], Placement] = field(default_factory=dict)
    """Placements by (DPU, instant): the one latest on the topic wins, as in the tables and
    sink."""
    _placement_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def run(self, records: list[DpuEvent | Placement | Reset]) -> None:
        inputs = deque((r, counting.Source(0, i, 0)) for i, r in enumerate(records))
        deltas: deque[tuple[str, dict]] = deque()
        again: list[tuple[Any, counting.Source, bool]] = []  # (record, source, first time?)
        now = 10**18
        while inputs or deltas or again:
            choice = self.rng.random()
            if deltas and (choice < 0.5 or not (inputs or again)):
                space_id, value = deltas.popleft()
                if deltas and self.rng.random() < self.skip:
                    deltas.insert(self.rng.randrange(len(deltas)) + 1, (space_id, value))
                    continue
                for outcome in self._maybe_twice("spaces", space_id, lambda: counting.on_delta(
                        self.db, space_id, value, now)):
                    self._collect(outcome)
                continue
            if again and (choice < 0.6 or not inputs):
                record, src, first_time = again.pop(self.rng.randrange(len(again)))
            else:
                record, src = inputs.popleft()
                first_time = True
                if self.rng.random() < self.skip:
                    again.append((record, src, True))
                    continue
                if self.rng.random() < self.redeliver:
                    again.append((record, src, False))
            if first_time:
                self.order.append(record)
            state = ("spaces", record.space_id) if isinstance(record, Reset) else (
                "dpus", record.dpu_id)
            for outcome in self._maybe_twice(*state, lambda: self._apply(record, src, now)):
                self._emit(outcome, deltas)

    def _apply(self, record, src: counting.Source, now: int) -> counting.Outcome:
        if isinstance(record, DpuEvent):
            return counting.on_event(self.db, record, src)
        if isinstance(record, Placement):
            # Of two placements for one instant, the later record on the topic wins.
            key = (record.dpu_id, record.installed_at)
            if self._placement_offsets.get(key, -1) <= src.offset:
                self._placement_offsets[key] = src.offset
                self.placements[key] = record
            return counting.on_placement(self.db, record, src)
        self.resets[(record.space_id, record.at)] = record  # as the sink: every delivery
        return counting.on_reset(self.db, record, src, now)

    def _emit(self, outcome: counting.Outcome, deltas: deque) -> None:
        for out in outcome.out:
            if out.topic == counting.DELTAS:
                # A space's deltas keep their order, like records of one Kafka partition.
                deltas.append((out.key, orjson.loads(orjson.dumps(out.value))))
        self._collect(outcome)

    def _maybe_twice(self, table: str, key: str,
                     apply: Callable[[], counting.Outcome]) -> list[counting.Outcome]:
        """Apply a record; by chance lose its state write (its outputs and log writes stay) and
        apply it again, as a restart reads it again before the records after it on its topic.
        (Read again after a record of another topic of its DPU, it may be attributed differently
        than its outputs already sent were: a known limit, see README.)"""
        before = self.db.tables.get(table, {}).get(key)
        outcomes = [apply()]
        if self.rng.random() < self.lose_state:
            if before is None:
                self.db.tables.get(table, {}).pop(key, None)
            else:
                self.db.tables[table][key] = before
            self.db.forget()  # the restart decodes the tables again
            outcomes.append(apply())
        return outcomes

    def _collect(self, outcome: counting.Outcome) -> None:
        for out in outcome.out:
            if out.topic == counting.COUNTS and out.value["k"] in ("e", "c"):
                key = (out.key, *out.value["src"])
                self.history.setdefault(key, out.value)

    def realtime(self, space_id: str) -> int | None:
        state = self.db.load("spaces", space_id)
        return None if state is None else state.count

    def as_of(self, space_id: str, at: int) -> int:
        """count(S, at) the way the database answers it: latest reset plus history rows."""
        before = [r for r in self.resets.values() if r.space_id == space_id and r.at <= at]
        latest = max(before, key=lambda r: r.at) if before else None
        total = latest.count if latest else 0
        for (space, *_), row in self.history.items():
            if space == space_id and row["ts"] <= at and (latest is None or row["ts"] > latest.at):
                total += row["d"]
        return total
