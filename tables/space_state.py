"""A space's realtime count, as kept in the ``spaces`` table, and the count definition behind it.

SPEC §2: ``count(S, T) = base(S, T) + sum of attributed deltas with r < ts <= T`` where ``r`` is the
instant of the latest reset at or before ``T``. The realtime count is ``count(S, +inf)``.

Arrival order must not matter, so a space keeps the deltas it received after its latest reset,
per UTC day (totals here, the logged deltas in the ``space-days`` table): a reset that arrives
late recomputes the count from them. Deltas before the latest reset can never change the realtime
count again, so their days are dropped and the state stays as small as a day or two of traffic,
however long the history (the full history lives in PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from pipeline.timeutil import DAY_US, day_of


DayLoader = Callable[[int, int], list[list]]
"""``(day, length) -> [[instant, delta, source], ...]``: the logged deltas of one day."""


@dataclass
class SpaceState:
    """Everything the pipeline keeps about one space."""

    space_id: str
    count: int = 0
    """Realtime count: ``count(S, +inf)`` over everything processed so far."""
    reset_at: int | None = None
    """Instant of the latest reset, None if never reset."""
    reset_count: int = 0
    """Count set by the latest reset."""
    days: dict[int, list[int]] = field(default_factory=dict)
    """``day -> [net delta, deltas logged]`` for UTC days from the latest reset's day on."""
    updated_at: int | None = None
    """Processing time of the last change to ``count``, epoch microseconds."""
    applied: dict[str, list[int]] = field(default_factory=dict)
    """Highest ``[offset, seq]`` applied per source partition. Records above it are new; one at
    or below it may still be new (delivered out of order), which the caller checks exactly."""
    latest: int | None = None
    """Instant of the latest delta counted (None: none yet); for a state kept by an earlier
    version, the end of its latest logged day, a bound as safe (see ``in_time_order``)."""

    def maybe_applied(self, source: str, offset: int, seq: int = 0) -> bool:
        last = self.applied.get(source)
        return last is not None and (offset, seq) <= (last[0], last[1])

    def mark_applied(self, source: str, offset: int, seq: int = 0) -> None:
        last = self.applied.get(source)
        if last is None or (offset, seq) > (last[0], last[1]):
            self.applied[source] = [offset, seq]

    def counts_at_realtime(self, ts: int) -> bool:
        """Whether a delta at ``ts`` is after the latest reset (else the reset absorbed it)."""
        return self.reset_at is None or ts > self.reset_at

    def in_time_order(self, ts: int) -> bool:
        """Whether a delta at ``ts`` comes after every instant counted so far (deltas and the
        latest reset): then ``count(S, ts)`` is the realtime count once it is applied, and its
        history row needs no reconciliation. A delta at an instant already counted is not: rows
        at one instant share its count."""
        return self.counts_at_realtime(ts) and (self.latest is None or ts > self.latest)

    def add_delta(self, ts: int, delta: int) -> tuple[int, int] | None:
        """Apply one attributed delta.

        Returns ``(day, index)`` at which the caller logs ``[ts, delta]``, or None when the
        latest reset absorbed it (only history, in the database, sees it then).
        """
        if not self.counts_at_realtime(ts):
            return None
        self.count += delta
        if self.latest is None or ts > self.latest:
            self.latest = ts
        entry = self.days.setdefault(day_of(ts), [0, 0])
        entry[0] += delta
        entry[1] += 1
        return day_of(ts), entry[1] - 1

    def add_reset(self, at: int, count: int, load_day: DayLoader) -> list[tuple[int, int]]:
        """Apply a reset, late or not. Returns ``(day, length)`` of the day logs to delete.

        Only a reset at or after the latest one changes the realtime count: it becomes
        ``count + sum of deltas after at``, computed from the kept day logs.
        """
        if self.reset_at is not None and at < self.reset_at:
            return []
        reset_day = day_of(at)
        after = sum(total for day, (total, _) in self.days.items() if day > reset_day)
        if reset_day in self.days:
            after += sum(d for ts, d, *_ in load_day(reset_day, self.days[reset_day][1])
                         if ts > at)
        self.reset_at, self.reset_count = at, count
        self.count = count + after
        dropped = [(day, n) for day, (_, n) in self.days.items() if day < reset_day]
        for day, _ in dropped:
            del self.days[day]
        return dropped

    def to_value(self) -> dict[str, Any]:
        return {"c": self.count, "ra": self.reset_at, "rc": self.reset_count,
                "d": [[day, total, n] for day, (total, n) in self.days.items()],
                "u": self.updated_at, "a": self.applied, "l": self.latest}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_value())

    @classmethod
    def from_value(cls, space_id: str, value: dict[str, Any] | None) -> "SpaceState":
        if not value:
            return cls(space_id)
        days = {day: [total, n] for day, total, n in value["d"]}
        latest = value["l"] if "l" in value else (
            (max(days) + 1) * DAY_US - 1 if days else None)  # kept by an earlier version
        return cls(space_id, value["c"], value["ra"], value["rc"], days, value["u"],
                   {k: list(v) for k, v in value["a"].items()}, latest)
