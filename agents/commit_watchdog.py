"""Reads a partition again when its commits stalled (see ``pipeline.faust_fixes``)."""

from __future__ import annotations

import logging

from pipeline.app import app
from pipeline.faust_fixes import stalled_partitions
from pipeline.metrics import metrics

log = logging.getLogger(__name__)
_suspects: dict = {}
"""Stalls seen at the previous tick: a partition is read again only if one persists."""


@app.timer(interval=5.0, name="commit-watchdog")
async def commit_watchdog() -> None:
    consumer = app.consumer
    stalled = stalled_partitions(consumer)
    for tp, (committed, low) in stalled.items():
        if _suspects.get(tp) == (committed, low):
            log.warning("commits of %s stalled at %d (acknowledged from %d): reading again",
                        tp, committed, low)
            metrics.inc("commit_stalls")
            await consumer.seek(tp, committed)
    _suspects.clear()
    _suspects.update(stalled)
