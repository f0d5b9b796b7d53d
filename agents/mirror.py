"""Keeps the Redis mirror whole when Redis comes back empty.

Redis keeps no data on disk here (it only mirrors counts kept in the tables), so a restarted Redis
is empty and the sinks would refill only the spaces that change afterwards. A timer watches the
server's ``run_id``; when it is new (a restart, or this worker's first look), the latest state of
every space and DPU this worker owns is written again from the tables.
"""

from __future__ import annotations

import logging

from pipeline.app import app, cfg
from sinks.redis_mirror import RedisMirror
from tables.dpu_state import DpuState
from tables.faust_tables import dpus, items, spaces
from tables.space_state import SpaceState

log = logging.getLogger(__name__)
resync = RedisMirror(cfg.redis_url, cfg.redis_prefix)
"""A mirror of its own: the sink agents' buffers are never flushed from two places."""


def space_payload(state: SpaceState) -> dict:
    return {"space_id": state.space_id, "count": state.count, "updated_at": state.updated_at}


def dpu_payload(state: DpuState) -> dict:
    return {"dpu_id": state.dpu_id, "ins": state.ins, "outs": state.outs, "net": state.net,
            "last_event_ts": state.last_event_at}


@app.timer(interval=2.0, name="mirror-resync")
async def resync_mirror() -> None:
    run_id = await resync.server_run_id()
    if run_id is None or run_id == resync.synced_run_id or not app.consumer.assignment():
        return
    # Tables iterate the partitions this worker owns (actives), so each worker writes its own.
    for space_id, value in items(spaces):
        resync.add(("space", space_id, space_payload(SpaceState.from_value(space_id, value))))
    for dpu_id, value in items(dpus):
        resync.add(("dpu", dpu_id, dpu_payload(DpuState.from_value(dpu_id, value))))
    rows = resync.stats.pending
    await resync.flush()
    resync.synced_run_id = run_id
    log.info("Redis mirror written again from the tables: %d spaces and DPUs", rows)
