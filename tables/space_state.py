"""A space's realtime count, as kept in the ``spaces`` table, and the count definition behind it.

SPEC §2: ``count(S, T) = base(S, T) + sum of attributed deltas with r < ts <= T`` where ``r`` is the
instant of the latest reset at or before ``T``. The realtime count is ``count(S, +inf)``.

Arrival order must not matter, so a space keeps the deltas it received after its latest reset,
bucketed by UTC day (totals here, the per-instant detail in the ``space_days`` table): a reset that
arrives late recomputes the count from them. Deltas before the latest reset can never change the
realtime count again, so their buckets are dropped and the state stays as small as a day or two of
traffic, however long the history (the full history lives in PostgreSQL).
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.timeutil import day_of


DayBucket = dict[int, int]
"""Net delta per event instant within one day."""


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
    resets: list[tuple[int, int]] = field(default_factory=list)
    """Every reset as ``(at, count)``, ascending."""
    day_totals: dict[int, int] = field(default_factory=dict)
    """Net delta per UTC day, for days at or after the latest reset's day."""
    updated_at: int | None = None
    """Processing time of the last change to ``count``, epoch microseconds."""
    applied: dict[str, list[int]] = field(default_factory=dict)
    """Highest ``[offset, seq]`` applied per source partition (idempotent redelivery)."""

    def already_applied(self, source: str, offset: int, seq: int = 0) -> bool:
        last = self.applied.get(source)
        return last is not None and (offset, seq) <= (last[0], last[1])

    def mark_applied(self, source: str, offset: int, seq: int = 0) -> None:
        self.applied[source] = [offset, seq]

    def counts_at_realtime(self, ts: int) -> bool:
        """Whether a delta at ``ts`` is after the latest reset (else the reset absorbed it)."""
        return self.reset_at is None or ts > self.reset_at

    def add_delta(self, ts: int, delta: int, bucket: DayBucket | None) -> DayBucket | None:
        """Apply one attributed delta; returns the updated day bucket to store (None: drop).

        ``bucket`` is the stored detail of ``day_of(ts)`` (None when there is none yet).
        """
        if not self.counts_at_realtime(ts):
            return None  # before the latest reset: only history (the database) sees it
        self.count += delta
        day = day_of(ts)
        self.day_totals[day] = self.day_totals.get(day, 0) + delta
        bucket = dict(bucket or {})
        bucket[ts] = bucket.get(ts, 0) + delta
        return bucket

    def add_reset(self, at: int, count: int,
                  load_bucket: Callable[[int], DayBucket | None]) -> list[int]:
        """Apply a reset, late or not. Returns the days whose buckets can be deleted.

        Only a reset later than the current latest one changes the realtime count: it becomes
        ``count + sum of deltas after at``, computed from the kept buckets.
        """
        entry = (at, count)
        if entry not in self.resets:
            # A second reset at the same instant replaces the first.
            self.resets = [r for r in self.resets if r[0] != at]
            insort(self.resets, entry)
        if self.reset_at is not None and at < self.reset_at:
            return []
        reset_day = day_of(at)
        after = sum(total for day, total in self.day_totals.items() if day > reset_day)
        bucket = load_bucket(reset_day) if reset_day in self.day_totals else None
        if bucket:
            after += sum(d for ts, d in bucket.items() if ts > at)
        self.reset_at, self.reset_count = at, count
        self.count = count + after
        dropped = [day for day in self.day_totals if day < reset_day]
        for day in dropped:
            del self.day_totals[day]
        return dropped

    def to_value(self) -> dict[str, Any]:
        return {"c": self.count, "ra": self.reset_at, "rc": self.reset_count,
                "r": [list(r) for r in self.resets],
                "d": [[day, total] for day, total in self.day_totals.items()],
                "u": self.updated_at, "a": self.applied}

    @classmethod
    def from_value(cls, space_id: str, value: dict[str, Any] | None) -> "SpaceState":
        if not value:
            return cls(space_id)
        return cls(space_id, value["c"], value["ra"], value["rc"],
                   [(at, c) for at, c in value["r"]], {day: t for day, t in value["d"]},
                   value["u"], {k: list(v) for k, v in value["a"].items()})


def bucket_to_value(bucket: DayBucket) -> list[list[int]]:
    return [[ts, d] for ts, d in bucket.items()]


def bucket_from_value(value: list[list[int]] | None) -> DayBucket | None:
    return None if value is None else {ts: d for ts, d in value}
