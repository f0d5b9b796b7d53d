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

from pipeline.app import app, cfg
from sinks.redis_mirror import RedisMirror, dpu_change, space_change
from tables.dpu_state import DpuState
from tables.faust_tables import dpus, items, spaces
from tables.space_state import SpaceState

log = logging.getLogger(__name__)
resync = RedisMirror(cfg.redis_url, cfg.redis_prefix)
"""A mirror of its own: the sink agents' buffers are never flushed from two places."""


@app.timer(interval=2.0, name="mirror-resync")
async def resync_mirror() -> None:
    run_id = await resync.server_run_id()
    seen = (run_id, app.consumer_generation_id)
    if run_id is None or seen == resync.synced or app.rebalancing or \
            not app.tables.recovery.completed.is_set() or not app.consumer.assignment():
        return
    # Tables iterate the partitions this worker owns (actives), so each worker writes its own.
    for space_id, value in items(spaces):
        space = SpaceState.from_value(space_id, value)
        resync.add(space_change(space_id, space.count, space.updated_at))
    for dpu_id, value in items(dpus):
        dpu = DpuState.from_value(dpu_id, value)
        resync.add(dpu_change(dpu_id, dpu.ins, dpu.outs, dpu.last_event_at))
    rows = resync.stats.pending
    await resync.flush()
    resync.synced = seen
    log.info("Redis mirror written again from the tables: %d spaces and DPUs", rows)
