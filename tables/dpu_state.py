"""A DPU's placement history and counters, as kept in the ``dpus`` table.

Pure logic over a plain JSON-able value so it is unit-tested without Kafka and restored from the
changelog as is. The placement valid at ``t`` is the one with the greatest ``installed_at <= t``
(SPEC §1); a placement with no spaces means the DPU was taken down.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

import orjson

from pipeline.jsonbytes import dumps_kept
from pipeline.models import Placement, SpaceSign
from pipeline.timeutil import day_of


@dataclass
class PlacementHistory:
    """Every placement of one DPU, ordered by ``installed_at``."""

    starts: list[int] = field(default_factory=list)
    """``installed_at`` of each placement, ascending, no repeats."""
    entries: list[Placement] = field(default_factory=list)
    """The placements, parallel to ``starts``."""
    offsets: list[int] = field(default_factory=list)
    """Source offset of each placement, parallel to ``starts`` (-1: not recorded)."""
    _encoded: orjson.Fragment | None = field(default=None, init=False, repr=False,
                                             compare=False)
    """``to_value`` encoded, until the next ``add`` (placements change rarely, states often)."""

    def valid_at(self, ts: int) -> Placement | None:
        """The placement in force at ``ts``, or None before the first one."""
        i = bisect_right(self.starts, ts)
        return self.entries[i - 1] if i else None

    def add(self, placement: Placement, offset: int = -1
            ) -> tuple[int, int | None, Placement | None]:
        """Insert or replace (same ``installed_at``) a placement read at source ``offset``.

        Returns the interval ``[start, end)`` it now governs (``end`` None: open) and the
        placement that governed that interval before, so late placements can re-attribute.
        """
        self._encoded = None
        start = placement.installed_at
        i = bisect_right(self.starts, start)
        if i and self.starts[i - 1] == start:
            previous = self.entries[i - 1]
            self.entries[i - 1] = placement
            self.offsets[i - 1] = offset
            end = self.starts[i] if i < len(self.starts) else None
            return start, end, previous
        previous = self.entries[i - 1] if i else None
        self.starts.insert(i, start)
        self.entries.insert(i, placement)
        self.offsets.insert(i, offset)
        end = self.starts[i + 1] if i + 1 < len(self.starts) else None
        return start, end, previous

    def _index_at(self, instant: int) -> int | None:
        """Index of the placement recorded at exactly ``instant``, if any."""
        i = bisect_right(self.starts, instant)
        return i - 1 if i and self.starts[i - 1] == instant else None

    def holds(self, placement: Placement) -> bool:
        """Whether exactly this placement is the one recorded at its instant."""
        i = self._index_at(placement.installed_at)
        return i is not None and self.entries[i] == placement

    def superseded(self, placement: Placement, offset: int) -> bool:
        """Whether a placement read after ``offset`` already holds the same instant.

        Two placements of a DPU for one instant: the one recorded later on the topic wins,
        whatever order they are processed in (a record read again after a later one must not
        take its place back).
        """
        i = self._index_at(placement.installed_at)
        return i is not None and self.offsets[i] > offset

    @property
    def current(self) -> Placement | None:
        return self.entries[-1] if self.entries else None

    def to_value(self) -> list[Any]:
        return [[p.installed_at, p.doorway_id, [[s.space_id, s.direction] for s in p.spaces],
                 offset] for p, offset in zip(self.entries, self.offsets)]

    def encoded(self) -> orjson.Fragment:
        if self._encoded is None:
            self._encoded = orjson.Fragment(dumps_kept(self.to_value()))
        return self._encoded

    @classmethod
    def from_value(cls, dpu_id: str, value: list[Any]) -> "PlacementHistory":
        entries = [Placement(dpu_id, at, tuple(SpaceSign(s, d) for s, d in spaces), door)
                   for at, door, spaces, *_ in value]
        offsets = [item[3] if len(item) > 3 else -1 for item in value]  # older values: none
        return cls([p.installed_at for p in entries], entries, offsets)


@dataclass
class DpuState:
    """Everything the pipeline keeps about one DPU."""

    dpu_id: str
    placements: PlacementHistory = field(default_factory=PlacementHistory)
    ins: int = 0
    """Counted +1 crossings."""
    outs: int = 0
    """Counted -1 crossings."""
    last_event_at: int | None = None
    """Greatest event time counted."""
    applied: dict[str, int] = field(default_factory=dict)
    """Highest source offset applied per ``"<topic code>:<partition>"``. Records above it are
    new; one at or below it was probably applied (redelivered after a crash or rebalance) but may
    have been skipped and delivered late, which the caller checks exactly."""
    days: dict[int, int] = field(default_factory=dict)
    """``day -> events logged`` in the ``dpu-days`` table, per UTC day."""

    @property
    def net(self) -> int:
        return self.ins - self.outs

    def maybe_applied(self, source: str, offset: int) -> bool:
        return offset <= self.applied.get(source, -1)

    def mark_applied(self, source: str, offset: int) -> None:
        self.applied[source] = max(offset, self.applied.get(source, -1))

    def days_between(self, start: int, end: int | None) -> list[tuple[int, int]]:
        """``(day, events logged)`` of the days that may hold events in ``[start, end)``."""
        first = day_of(start)
        last = None if end is None else day_of(end - 1)
        return sorted((d, n) for d, n in self.days.items()
                      if d >= first and (last is None or d <= last))

    def count_event(self, ts: int, direction: int) -> None:
        if direction > 0:
            self.ins += 1
        else:
            self.outs += 1
        if self.last_event_at is None or ts > self.last_event_at:
            self.last_event_at = ts

    def to_value(self) -> dict[str, Any]:
        return {"p": self.placements.to_value(), "i": self.ins, "o": self.outs,
                "l": self.last_event_at, "a": self.applied,
                "d": [[day, n] for day, n in self.days.items()]}

    def to_bytes(self) -> bytes:
        return orjson.dumps({"p": self.placements.encoded(), "i": self.ins, "o": self.outs,
                             "l": self.last_event_at, "a": self.applied,
                             "d": [[day, n] for day, n in self.days.items()]})

    @classmethod
    def from_value(cls, dpu_id: str, value: dict[str, Any] | None) -> "DpuState":
        if not value:
            return cls(dpu_id)
        return cls(dpu_id, PlacementHistory.from_value(dpu_id, value["p"]), value["i"],
                   value["o"], value["l"], dict(value["a"]), {d: n for d, n in value["d"]})


def signs_of(placement: Placement | None) -> dict[str, int]:
    return {s.space_id: s.direction for s in placement.spaces} if placement else {}


def _split(sign: int, ins: int, outs: int) -> tuple[int, int]:
    """(entries, exits) of a space for ``ins`` +1 and ``outs`` -1 crossings under ``sign``."""
    if sign > 0:
        return ins, outs
    if sign < 0:
        return outs, ins
    return 0, 0


def reattribution(crossings: Iterable[tuple[Hashable, int, int, int]], start: int,
                  end: int | None, before: Placement | None,
                  after: Placement) -> dict[tuple[str, Hashable], tuple[int, int]]:
    """Corrections when ``after`` takes over ``[start, end)`` from ``before``.

    ``crossings`` are a DPU's ``(key, instant, ins, outs)``; those inside the interval were
    attributed through ``before`` and must now be through ``after``. Returns, per
    ``(space_id, key)``, the change of that space's ``(entries, exits)``; its count changes by
    entries - exits.
    """
    old, new = signs_of(before), signs_of(after)
    changed = [s for s in old.keys() | new.keys() if old.get(s, 0) != new.get(s, 0)]
    out: dict[tuple[str, Hashable], tuple[int, int]] = {}
    for key, ts, ins, outs in crossings:
        if ts < start or (end is not None and ts >= end):
            continue
        for space in changed:
            e_old, x_old = _split(old.get(space, 0), ins, outs)
            e_new, x_new = _split(new.get(space, 0), ins, outs)
            if (e_new, x_new) != (e_old, x_old):
                e, x = out.get((space, key), (0, 0))
                out[(space, key)] = (e + e_new - e_old, x + x_new - x_old)
    return out
