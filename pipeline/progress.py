"""``dpu wait``: has the pipeline counted and sunk everything produced so far?

The worker's consumer group commits a record's offset only after the record was processed and,
for sink agents, written. So the pipeline is caught up when, on every partition of every pipeline
topic, the committed offset has reached the end; this must hold on two consecutive looks, since a
record just processed may still be on its way to the next topic.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.settings import Settings
from pipeline.topics import admin_client


async def backlog(settings: Settings) -> dict[str, int]:
    """Records produced but not yet committed by the worker group, per topic."""
    admin = await admin_client(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        names = [settings.topic(n) for n in topics.ALL]
        described = await admin.describe_topics(names)
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described
               for p in t.get("partitions", ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        left: dict[str, int] = {}
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if end > done:
                left[tp.topic] = left.get(tp.topic, 0) + end - done
        return left
    finally:
        await consumer.stop()
        await admin.close()


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
