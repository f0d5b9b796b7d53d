"""Watches the health of the DPUs this worker holds: status counts, and each change of status.

Every ``SCAN_INTERVAL_S`` a timer reads the ``dpus`` table partitions this worker owns, counts
the DPUs per status (``GET /dpus`` sums them over the workers; ``/metrics`` shows this worker's),
and publishes every DPU whose status changed since its previous scan on the Redis channel
``<prefix>dpu-status``, which the live feed (``GET /events/stream``) forwards. A DPU seen for the
first time by this worker (a start, partitions that moved here) is not a change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis

from pipeline import health
from pipeline.app import app, cfg, timer
from pipeline.metrics import metrics
from pipeline.timeutil import iso, now_us
from tables.faust_tables import dpus, paced

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 10.0
"""How often the statuses are computed again (a change shows within this plus the quiet period)."""


PUBLISH_CHUNK = 200
"""Status changes sent to Redis in one pipeline: 2,000 DPUs heard from again at once (the bench's
fleet, a site back online) were 2,000 commands packed in one go, 20–28 ms of the event loop."""


def status_channel(prefix: str) -> str:
    """The Redis channel of DPU status changes."""
    return f"{prefix}dpu-status"


@dataclass
class HealthWatch:
    """The latest scan of this worker's DPUs."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(health.STATUSES, 0))
    """DPUs per status."""
    statuses: dict[str, str] = field(default_factory=dict)
    """Status of each DPU at the latest scan."""
    scanned_at: int | None = None
    """When the latest scan ended (epoch µs)."""
    generation: int | None = None
    """The group generation of the latest scan: after a rebalance no change is announced for
    DPUs new to this worker."""

    async def scan(self, values, now: int) -> list[dict]:
        """Statuses of ``(dpu_id, raw value)`` pairs; the changes since the previous scan."""
        counts = dict.fromkeys(health.STATUSES, 0)
        statuses: dict[str, str] = {}
        changes = []
        async for dpu_id, raw in paced(values):
            value = orjson.loads(raw)
            status = health.status_of_value(value, now, cfg.silent_after_s)
            counts[status] += 1
            statuses[dpu_id] = status
            before = self.statuses.get(dpu_id)
            if before is not None and before != status:
                changes.append({"dpu_id": dpu_id, "status": status, "previous": before,
                                "last_event_at": iso(value.get("l")), "at": iso(now)})
        self.counts, self.statuses, self.scanned_at = counts, statuses, now_us()
        return changes


watch = HealthWatch()
_redis: list[aioredis.Redis] = []


def _client() -> aioredis.Redis:
    if not _redis:
        _redis.append(aioredis.from_url(cfg.redis_url, socket_timeout=5,
                                        socket_connect_timeout=5))
    return _redis[0]


async def publish_changes(client: aioredis.Redis, channel: str, changes: list[dict],
                          chunk: int = PUBLISH_CHUNK) -> None:
    """Publish each change on ``channel`` in order, ``chunk`` commands per pipeline."""
    for start in range(0, len(changes), chunk):
        async with client.pipeline(transaction=False) as pipe:
            for change in changes[start:start + chunk]:
                pipe.publish(channel, orjson.dumps(change))
            await pipe.execute()


@timer(interval=SCAN_INTERVAL_S, name="dpu-health")
async def scan_dpu_health() -> None:
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    if watch.generation != app.consumer_generation_id:
        watch.statuses = {}  # DPUs moved: the first look at them is no change
        watch.generation = app.consumer_generation_id
    values = ((key.decode(), raw) for key, raw in dpus.items())
    changes = await watch.scan(values, now_us())
    metrics.set_sensor_statuses(watch.counts)
    if not changes:
        return
    try:
        await publish_changes(_client(), status_channel(cfg.redis_prefix), changes)
    except (aioredis.RedisError, OSError) as exc:
        log.warning("could not publish %d DPU status change(s): %s", len(changes), exc)
