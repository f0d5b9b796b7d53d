"""Keeps commits moving and never past a record no agent processed (see ``pipeline.faust_fixes``):
offsets a fetch jumped over count as a gap only once read through and found empty, and a
partition whose commits stalled is read again from its committed offset."""

from __future__ import annotations

import logging

from aiokafka import TopicPartition

from agents.sinks import SINKS
from pipeline import topics
from pipeline.app import app, cfg, timer
from pipeline.faust_fixes import record_gap, stalled_partitions, suspected_gaps
from pipeline.metrics import metrics
from pipeline.progress import MARKER_SCAN, committed_reader, offsets_between
from pipeline.stalls import PartitionView, Watch, after_reading_through, standing_still

log = logging.getLogger(__name__)

PIPELINE_TOPICS = frozenset(cfg.topic(name) for name in topics.ALL)
"""Topics the group commits (table changelogs are only read, for recovery)."""
watch = Watch()


def partition_views(consumer) -> dict:
    """The pipeline topics' assigned partitions with a committed offset and a high watermark."""
    views = {}
    for tp in consumer.assignment():
        if tp.topic not in PIPELINE_TOPICS:
            continue
        committed = consumer._committed_offset.get(tp)
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        if committed is None or high is None:
            continue
        acked = consumer._acked.get(tp)
        views[tp] = PartitionView(committed, high, (min(acked), max(acked)) if acked else None)
    return views


async def offsets_in(ranges: dict) -> dict:
    """Offsets of the records in ``[start, end)`` per partition, read with a consumer of its
    own (committed records only: transaction markers and aborted records are no records)."""
    consumer = committed_reader(cfg)
    await consumer.start()
    try:
        found = await offsets_between(consumer, {
            TopicPartition(tp.topic, tp.partition): span for tp, span in ranges.items()})
    finally:
        await consumer.stop()
    return {tp: found[TopicPartition(tp.topic, tp.partition)] for tp in ranges}


def take_suspected_gaps(consumer) -> dict:
    """The jumped-over ranges still worth reading: assigned partitions, above the commit."""
    suspected, assigned, out = suspected_gaps(consumer), consumer.assignment(), {}
    for tp in list(suspected):
        committed = consumer._committed_offset.get(tp)
        gaps = [(a, b) for a, b in suspected.pop(tp)
                if tp in assigned and (committed is None or b > committed)]
        if gaps:
            out[tp] = gaps
    return out


@timer(interval=5.0, name="commit-watchdog")
async def commit_watchdog() -> None:
    consumer = app.consumer
    if app.rebalancing:
        return
    suspected = take_suspected_gaps(consumer)
    stalled = stalled_partitions(consumer)
    ranges = {tp: (committed, low) for tp, (committed, low) in stalled.items()
              if watch.gaps.get(tp) == (committed, low)}
    watch.gaps = stalled
    if any(sink.stats.last_error or sink.stats.writing for sink in SINKS):
        still = []  # a sink waits for its database: commits stand still for a reason
    else:
        still = standing_still(partition_views(consumer), watch)
    why = {tp: "acknowledgements wait for it" for tp in ranges}
    for tp, committed, high, reason in still:
        ranges.setdefault(tp, (committed, min(high, committed + MARKER_SCAN)))
        why.setdefault(tp, reason)
    # One read through every range of interest per partition.
    spans = {tp: suspected.get(tp, []) + ([ranges[tp]] if tp in ranges else [])
             for tp in {*suspected, *ranges}}
    try:
        found = await offsets_in({tp: (min(a for a, _ in s), max(b for _, b in s))
                                  for tp, s in spans.items()}) if spans else {}
    except Exception as exc:  # the broker away: the next tick looks again
        log.warning("commit watchdog: %s", exc)
        return

    def empty(tp, start: int, end: int) -> bool:
        return not any(start <= offset < end for offset in found[tp])

    # Jumped-over offsets with no record are a real gap (transaction markers). Where records
    # are, Faust skipped them: the partition's head waits for them, and the stall below reads
    # the partition again.
    for tp, gaps in suspected.items():
        for start, end in gaps:
            if empty(tp, start, end):
                record_gap(consumer, tp, start, end)
    markers, read_again = after_reading_through(ranges, found, consumer._committed_offset,
                                                stalled)
    for tp, start, end in markers:  # transaction markers only: nothing to read again
        record_gap(consumer, tp, start, end)
    for tp, start in read_again:
        log.warning("commits of %s stalled at %d (%s): reading it again from there",
                    tp, start, why[tp])
        metrics.commit_stalls.inc()
        await consumer.seek(tp, start)
