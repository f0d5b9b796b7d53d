"""Publishes each daily reset as an ordinary reset once its instant has passed on the wall clock.

The reset goes through the resets topic like any other, so the count, the history and a replay
all see it at its instant in event time. The schedule and the last instant applied live in the
``daily-resets`` table; the agent advances ``last`` when the published reset comes back.
"""

from __future__ import annotations

import orjson

from agents.counting import resets_out
from pipeline.app import timer
from pipeline.metrics import metrics
from pipeline.timeutil import iso, now_us
from tables.daily import DailySchedule
from tables.faust_tables import daily_resets, items

# Only suppresses re-publishing an instant in the second or so before the reset comes back from
# the topic; losing it (a restart) at worst publishes a reset twice, which changes nothing.
_published: dict[str, int] = {}


@timer(interval=1.0, name="publish-daily-resets")
async def publish_daily_resets() -> None:
    now = now_us()
    for space_id, value in list(items(daily_resets)):
        schedule = DailySchedule.from_value(value)
        for at in schedule.due(now):
            if at <= _published.get(space_id, -1):
                continue
            await resets_out.send(key=space_id.encode(), value=orjson.dumps(
                {"space_id": space_id, "at": iso(at), "count": schedule.count, "daily": True}))
            _published[space_id] = at
            metrics.daily_resets_published.inc()
