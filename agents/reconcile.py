"""The reconciliation timer: keeps ``space_count.count_reconciled`` right, continuously."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from pipeline.app import cfg, timer
from pipeline.metrics import metrics
from pipeline.reconcile import pause_after, reconcile_round

log = logging.getLogger(__name__)
_connection: list[psycopg.AsyncConnection] = []


@timer(interval=1.0, name="reconcile-space-counts")
async def reconcile_space_counts() -> None:
    try:
        if not _connection or _connection[0].closed:
            _connection[:] = [await psycopg.AsyncConnection.connect(
                cfg.database_url, connect_timeout=5, application_name="dpu-reconcile",
                autocommit=True)]
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if not await reconcile_round(_connection[0]):
                break
            metrics.reconcile_rounds.inc()
            # A backlog of rounds (during a burst, every space dirty) keeps the database busy
            # for at most its share of the time; fewer rounds also merge more marks each.
            await asyncio.sleep(pause_after(loop.time() - started, cfg.reconcile_share))
    except psycopg.Error as exc:  # the database is down: try again next tick
        log.warning("reconciliation skipped: %s", (str(exc).strip().splitlines() or [""])[0])
        if _connection:
            await _connection.pop().close()
