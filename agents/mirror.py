"""Keeps the Redis mirror whole when Redis comes back empty.

Redis keeps no data on disk here (it only mirrors counts kept in the tables), so a restarted Redis
is empty and the sinks would refill only the spaces that change afterwards. A timer watches the
server's ``run_id`` and the group's generation; when either is new (a restart, this worker's
first look, or partitions that moved to it), the latest state of every space and DPU this worker
owns is written again from the tables. (A space that moved to this worker after it had written
its own again would otherwise stay missing: seen in the fault campaign.)
"""

from __future__ import annotations

import logging

from faust.types import TP

from pipeline import topics
from pipeline.app import app, cfg, timer
from pipeline.topics import Partitioner
from sinks.redis_mirror import LAST_POSITION, RedisMirror, dpu_change, space_change
from tables.dpu_state import DpuState
from tables.faust_tables import dpus, items, spaces
from tables.space_state import SpaceState

log = logging.getLogger(__name__)
resync = RedisMirror(cfg.redis_url, cfg.redis_prefix)
"""A mirror of its own: the sink agents' buffers are never flushed from two places."""


space_counts_topic = cfg.topic(topics.SPACE_COUNTS)
telemetry_topic = cfg.topic(topics.TELEMETRY)


def end_of(topic: str, partition: int) -> tuple[int, int]:
    """The mirror version of the end of a topic's partition, as this worker last fetched it:
    just past the last record there, below the next one's ``(end, 0)``. (At ``(end, 0)`` the
    first change after a resync tied with it and was never written.) Unknown: below any."""
    try:
        end = app.consumer.highwater(TP(topic, partition)) or 0
    except Exception:
        end = 0
    return end - 1, LAST_POSITION


@timer(interval=2.0, name="mirror-resync")
async def resync_mirror() -> None:
    run_id = await resync.server_run_id()
    seen = (run_id, app.consumer_generation_id)
    if run_id is None or seen == resync.synced or app.rebalancing or \
            not app.tables.recovery.completed.is_set() or not app.consumer.assignment():
        return
    # Tables iterate the partitions this worker owns (actives), so each worker writes its own.
    # A value from the tables is as new as what the sinks will have written once they reach
    # the end of their topic's partition: that end is its version.
    partition_of = Partitioner(cfg.partitions)
    for space_id, value in items(spaces):
        space = SpaceState.from_value(space_id, value)
        resync.add(space_change(space_id, space.count, space.updated_at,
                                end_of(space_counts_topic, partition_of(space_id))))
    for dpu_id, value in items(dpus):
        dpu = DpuState.from_value(dpu_id, value)
        resync.add(dpu_change(dpu_id, dpu.ins, dpu.outs, dpu.last_event_at,
                              end_of(telemetry_topic, partition_of(dpu_id))))
    rows = resync.stats.pending
    await resync.flush()
    resync.synced = seen
    log.info("Redis mirror written again from the tables: %d spaces and DPUs", rows)
