"""``dpu wait``: has the pipeline counted and sunk everything produced so far?

The worker's consumer group commits a record's offset only after the record was processed and,
for sink agents, written. So the pipeline is caught up when, on every partition of every pipeline
topic, the committed offset has reached the end; this must hold on two consecutive looks, since a
record just processed may still be on its way to the next topic.

A producer that writes in Kafka transactions leaves commit markers that take an offset each but
are no record: a small gap between the committed offset and the end of an input topic is read
through to see whether any record is really there.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.kafka_auth import client_options
from pipeline.settings import Settings
from pipeline.topics import admin_client


async def backlog(settings: Settings) -> dict[str, int]:
    """Records produced but not yet committed by the worker group, per topic."""
    admin = await admin_client(settings)
    consumer = committed_reader(settings)
    await consumer.start()
    try:
        names = [settings.topic(n) for n in topics.ALL]
        inputs = {settings.topic(n) for n in topics.INPUTS}
        described = await admin.describe_topics(names)
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described
               for p in t.get("partitions", ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        gaps: dict[TopicPartition, tuple[int, int]] = {}
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if end > done:
                gaps[tp] = (done, end)
        small = {tp: gap for tp, gap in gaps.items()
                 if gap[1] - gap[0] <= MARKER_SCAN and tp.topic in inputs}
        records = await records_between(consumer, small) if small else {}
        left: dict[str, int] = {}
        for tp, (done, end) in gaps.items():
            n = records.get(tp, end - done)
            if n:
                left[tp.topic] = left.get(tp.topic, 0) + n
        return left
    finally:
        await consumer.stop()
        await admin.close()


MARKER_SCAN = 500
"""Gaps up to this many offsets are read through to tell records from transaction markers.
Only on the input topics: the workers' own producers write no transactions, and the records of
the others each hold a batch's rows, costly to read through at every look."""


def committed_reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer of committed records only (transaction markers and aborted records are no
    records) that commits nothing."""
    return AIOKafkaConsumer(**client_options(settings), isolation_level="read_committed",
                            enable_auto_commit=False)


async def records_between(consumer: AIOKafkaConsumer,
                          gaps: dict[TopicPartition, tuple[int, int]]) -> dict[TopicPartition, int]:
    """Committed records in ``[start, end)`` per partition (markers and aborted records skipped)."""
    return {tp: len(offsets) for tp, offsets in (await offsets_between(consumer, gaps)).items()}


async def offsets_between(consumer: AIOKafkaConsumer, gaps: dict[TopicPartition, tuple[int, int]],
                          timeout_s: float = 5) -> dict[TopicPartition, set[int]]:
    """Offsets of the records in ``[start, end)`` per partition, read with ``consumer`` (which
    should read committed data only). A range not read through in time counts as all records."""
    consumer.assign(list(gaps))
    for tp, (start, _) in gaps.items():
        consumer.seek(tp, start)
    found: dict[TopicPartition, set[int]] = {tp: set() for tp in gaps}
    pending = set(gaps)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        batches = await consumer.getmany(*pending, timeout_ms=200)
        for tp, messages in batches.items():
            start, end = gaps[tp]
            found[tp].update(m.offset for m in messages if start <= m.offset < end)
        for tp in list(pending):
            if await consumer.position(tp) >= gaps[tp][1]:
                pending.discard(tp)
    for tp in pending:
        found[tp] = set(range(*gaps[tp]))
    return found


async def wait_caught_up(settings: Settings, timeout_s: float, poll_s: float = 0.5,
                         on_poll=None) -> bool:
    deadline = time.monotonic() + timeout_s
    clean = 0
    while True:
        left = await backlog(settings)
        if on_poll:
            on_poll(left)
        clean = clean + 1 if not left else 0
        if clean >= 2:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
