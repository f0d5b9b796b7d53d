"""Daily resets: the instants at which a local wall-clock time occurs in an IANA zone.

Each day's reset is an ordinary reset at that instant (event time), published to the resets topic
once the instant has passed, so history and replays see it like any other. Across daylight-saving
changes the wall-clock time is kept: 04:00 in New York is 09:00 UTC in winter, 08:00 in summer.
A time skipped by a spring-forward gap resolves to the instant the zone's previous offset gives
(02:30 on that night happens at what is 03:30 by the new offset); a time that occurs twice in the
autumn resolves to its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.timeutil import from_us, to_us

MAX_CATCH_UP = 400
"""Most past daily instants published at once (a worker down for more than a year)."""


@dataclass(frozen=True)
class DailySchedule:
    wall: str
    """Local ``HH:MM`` or ``HH:MM:SS``."""
    tz: str
    """IANA zone name."""
    count: int
    """Count set at each daily reset."""
    since: int
    """Instant the schedule was set; only later instants are resets."""
    last: int | None = None
    """Latest daily instant already applied."""

    def instant_on(self, day: datetime) -> int:
        parts = [int(p) for p in self.wall.split(":")]
        local = datetime.combine(day.date(), time(*parts), tzinfo=ZoneInfo(self.tz))
        return to_us(local)

    def due(self, now: int) -> list[int]:
        """Daily instants after ``since`` and ``last``, up to ``now``, oldest first."""
        after = max(self.since, self.last if self.last is not None else self.since)
        zone = ZoneInfo(self.tz)
        day = from_us(after).astimezone(zone) - timedelta(days=1)
        out: list[int] = []
        while len(out) < MAX_CATCH_UP:
            instant = self.instant_on(day)
            if instant > now:
                break
            if instant > after:
                out.append(instant)
            day += timedelta(days=1)
        return out

    def is_instant(self, at: int) -> bool:
        """Whether ``at`` is one of this schedule's daily instants."""
        local = from_us(at).astimezone(ZoneInfo(self.tz))
        return self.instant_on(local) == at

    def to_value(self) -> dict[str, Any]:
        return {"t": self.wall, "tz": self.tz, "c": self.count, "s": self.since, "l": self.last}

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> "DailySchedule":
        return cls(value["t"], value["tz"], value["c"], value["s"], value["l"])
