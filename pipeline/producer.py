"""Publishing validated records to the pipeline's input topics (``dpu produce``, loads, POST)."""

from __future__ import annotations

import asyncio
from typing import Callable, Iterable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from pipeline.models import DailyReset, DpuEvent, Placement, Reset
from pipeline.kafka_auth import client_options
from pipeline.settings import Settings
from pipeline.topics import EVENTS, PLACEMENTS, RESETS, BrokerUnavailable, ensure_topics, \
    unreachable_message

Record = DpuEvent | Placement | Reset | DailyReset


def route(record: Record) -> tuple[str, str]:
    """(topic name without prefix, key) of a record: keyed by the id whose state it changes."""
    if isinstance(record, DpuEvent):
        return EVENTS, record.dpu_id
    if isinstance(record, Placement):
        return PLACEMENTS, record.dpu_id
    return RESETS, record.space_id


async def start_producer(settings: Settings, request_timeout_s: float = 15,
                         linger_ms: int = 5) -> AIOKafkaProducer:
    """A started producer; a record not acknowledged within ``request_timeout_s`` fails (its
    sends are retried until then, through a broker restart if it is short enough).
    ``linger_ms``: how long a send waits for others to share its produce request."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                enable_idempotence=True, linger_ms=linger_ms,
                                max_batch_size=256 * 1024,
                                request_timeout_ms=int(request_timeout_s * 1000))
    try:
        await asyncio.wait_for(producer.start(), 20)
    except (KafkaConnectionError, KafkaError, OSError, asyncio.TimeoutError):
        await producer.stop()
        raise BrokerUnavailable(unreachable_message(settings)) from None
    return producer


async def publish(settings: Settings, records: Iterable[Record],
                  progress: Callable[[int], None] | None = None) -> int:
    """Send every record (keyed, default partitioner) and wait for all acknowledgements."""
    await ensure_topics(settings)
    producer = await start_producer(settings)
    sent = 0
    try:
        pending = []
        for record in records:
            name, key = route(record)
            pending.append(await producer.send(settings.topic(name),
                                               orjson.dumps(record.to_json()),
                                               key=key.encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
                if progress:
                    progress(sent)
        await asyncio.gather(*pending)
        sent += len(pending)
        if progress:
            progress(sent)
    finally:
        await producer.stop()
    return sent
