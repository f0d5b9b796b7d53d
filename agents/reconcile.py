"""The reconciliation timer: keeps ``space_count.count_reconciled`` right, continuously."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from pipeline.app import cfg, timer
from pipeline.metrics import metrics
from pipeline.reconcile import ROUND_S, pause_after, reconcile_for, reconcile_round

log = logging.getLogger(__name__)
_connection: list[psycopg.AsyncConnection] = []


@timer(interval=1.0, name="reconcile-space-counts")
async def reconcile_space_counts() -> None:
    try:
        if not _connection or _connection[0].closed:
            _connection[:] = [await psycopg.AsyncConnection.connect(
                cfg.database_url, connect_timeout=5, application_name="dpu-reconcile",
                autocommit=True)]
        loop, conn = asyncio.get_running_loop(), _connection[0]
        while True:
            started = loop.time()
            if not await reconcile_for(ROUND_S, lambda: reconcile_round(conn, max_spaces=1),
                                       loop.time):
                break
            metrics.reconcile_rounds.inc()
            # A backlog of rounds (during a burst, every space dirty) keeps the database busy
            # for at most its share of the time; fewer rounds also merge more marks each.
            await asyncio.sleep(pause_after(loop.time() - started, cfg.reconcile_share))
    except psycopg.Error as exc:  # the database is down: try again next tick
        log.warning("reconciliation skipped: %s", (str(exc).strip().splitlines() or [""])[0])
        if _connection:
            await _connection.pop().close()
