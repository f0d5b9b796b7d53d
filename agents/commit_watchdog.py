"""Reads a partition again when its commits stalled (see ``pipeline.faust_fixes``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agents.sinks import SINKS
from pipeline import topics
from pipeline.app import app, cfg
from pipeline.faust_fixes import stalled_partitions
from pipeline.metrics import metrics

log = logging.getLogger(__name__)

PIPELINE_TOPICS = frozenset(cfg.topic(name) for name in topics.ALL)
"""Topics the group commits (table changelogs are only read, for recovery)."""
STILL_TICKS = 3
"""Ticks a partition's commit may stand still, records waiting, before it is read again."""


@dataclass
class Watch:
    """What the previous ticks saw; re-reading is idempotent, so this is only a heuristic."""

    gaps: dict = field(default_factory=dict)
    """Ack gaps seen at the previous tick."""
    still: dict = field(default_factory=dict)
    """Per partition: (committed offset, ticks it has not moved while records wait)."""


watch = Watch()


def standing_still(consumer) -> list:
    """Partitions whose committed offset has not moved for STILL_TICKS with records waiting.

    Seen after a rebalance: a record handed to one of the two agents that read the events topic
    but never to the other stays unacknowledged forever, and Faust never commits past it.
    """
    if any(sink.stats.last_error for sink in SINKS):
        return []  # a sink waits for its database: commits stand still for a reason
    out, seen = [], {}
    for tp in consumer.assignment():
        if tp.topic not in PIPELINE_TOPICS:
            continue
        committed = consumer._committed_offset.get(tp)
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        if committed is None or high is None or high <= committed:
            continue
        last, ticks = watch.still.get(tp, (None, 0))
        ticks = ticks + 1 if last == committed else 0
        seen[tp] = (committed, ticks)
        if ticks >= STILL_TICKS:
            out.append((tp, committed))
            seen[tp] = (committed, 0)
    watch.still = seen
    return out


@app.timer(interval=5.0, name="commit-watchdog")
async def commit_watchdog() -> None:
    consumer = app.consumer
    if app.rebalancing:
        return
    stalled = stalled_partitions(consumer)
    again = {tp: committed for tp, (committed, low) in stalled.items()
             if watch.gaps.get(tp) == (committed, low)}
    watch.gaps = stalled
    again.update({tp: committed for tp, committed in standing_still(consumer)})
    for tp, committed in again.items():
        log.warning("commits of %s stalled at %d: reading it again from there", tp, committed)
        metrics.inc("commit_stalls")
        await consumer.seek(tp, committed)
