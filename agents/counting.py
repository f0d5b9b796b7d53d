"""Counting agents: per-DPU attribution, then per-space counts (logic in ``tables/counting.py``).

``count_dpus`` reads events and placements (both keyed by ``dpu_id``, so a DPU's records share a
partition and one agent keeps its placement history). It sends one delta per space of the
placement valid at the event's own time to ``space-deltas`` and the DPU's running counts to
``dpu-telemetry``, with the raw record for ``dpu_log``. ``count_spaces`` reads those deltas and
the resets (keyed by ``space_id``) and keeps each space's realtime count.

Both take their records from the bulk input (``pipeline.bulk_input``) a batch at a time, keep
decoded table values across batches (``tables.cache``), and send one message per destination
partition and batch: a few large records between stages instead of one per event.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Callable, Iterator

import orjson
from faust.types import Message

from agents.batching import exit_on_agent_failure
from agents.ownership import Ownership
from pipeline import topics
from pipeline.topics import Partitioner
from pipeline.app import app, cfg, timer
from pipeline.bulk_input import Batch, bulk_input
from pipeline.jsonbytes import dumps_kept
from pipeline.messages import json_arrays
from pipeline.metrics import metrics
from pipeline.inputs import kafka_us, read_event, read_placement, read_reset, record_key
from pipeline.models import Reject
from pipeline.producer import start_producer
from pipeline.timeutil import now_us
from tables import counting
from tables.cache import LOGS, STATES, ChangelogWriter, TableCache
from tables.faust_tables import EPOCHS, TABLES

_RAW = dict(key_serializer="raw", value_serializer="raw")

EVENTS_TOPIC = cfg.topic(topics.EVENTS)
PLACEMENTS_TOPIC = cfg.topic(topics.PLACEMENTS)
RESETS_TOPIC = cfg.topic(topics.RESETS)
DELTAS_TOPIC = cfg.topic(topics.SPACE_DELTAS)
DEAD_LETTER_TOPIC = cfg.topic(topics.DEAD_LETTER)
OUTPUT_TOPICS = {name: cfg.topic(name) for name in (counting.DELTAS, counting.TELEMETRY,
                                                     counting.COUNTS)}

# Subscribed like any agent's topic (Faust assigns their partitions with the tables'), but
# their records reach the agents through the bulk input, never through these topics' channels.
for _name in (topics.EVENTS, topics.PLACEMENTS, topics.SPACE_DELTAS, topics.RESETS):
    app.topics.add(app.topic(cfg.topic(_name), **_RAW))
BULK = bulk_input(app)
dpu_records = BULK.subscribe("count-dpus", [EVENTS_TOPIC, PLACEMENTS_TOPIC])
space_records = BULK.subscribe("count-spaces", [DELTAS_TOPIC, RESETS_TOPIC])

dead_letter = app.topic(DEAD_LETTER_TOPIC, **_RAW)
events_out = app.topic(EVENTS_TOPIC, **_RAW)
"""The events topic as a destination (``POST /events``)."""
resets_out = app.topic(RESETS_TOPIC, **_RAW)
"""The resets topic as a destination (daily resets as they fall due, ``POST .../resets``)."""
placements_out = app.topic(PLACEMENTS_TOPIC, **_RAW)
"""The placements topic as a destination (``POST /placements``)."""
telemetry = app.topic(OUTPUT_TOPICS[counting.TELEMETRY], **_RAW)
space_counts = app.topic(OUTPUT_TOPICS[counting.COUNTS], **_RAW)

log = logging.getLogger(__name__)
ownership = Ownership(app, cfg.session_timeout_s)


class Outbox:
    """What one batch sends: per destination topic and partition one message (a JSON list of
    ``[key, value]`` pairs, in order, each encoded as it is added), and dead letters. Nothing
    is sent before ``send``, so a batch given up sends nothing."""

    def __init__(self, partitioner: Partitioner) -> None:
        self.partition_of = partitioner
        self.groups: dict[tuple[str, int], list] = {}
        self.dead: list[tuple[Message, str]] = []
        self.counted = self.duplicates = self.redelivered = 0

    def add(self, outcome: counting.Outcome) -> None:
        groups, partition_of, dumps = self.groups, self.partition_of, dumps_kept
        for out in outcome.out:
            group = (out.topic, partition_of(out.key))
            values = groups.get(group)
            if values is None:
                values = groups[group] = []
            values.append(dumps((out.key, out.value)))
        self.duplicates += outcome.duplicate
        self.redelivered += outcome.redelivered

    def log(self, message: Message) -> None:
        """The record as received, for ``dpu_log`` (written by the telemetry sink)."""
        raw = message.value or b""
        try:
            text, b64 = raw.decode(), False
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(raw).decode(), True
        group = (counting.TELEMETRY, message.partition)
        values = self.groups.get(group)
        if values is None:
            values = self.groups[group] = []
        values.append(dumps_kept((None, {
            "k": "log", "p": message.partition, "o": message.offset, "kts": kafka_us(message),
            "key": log_key(message.key), "raw": text, "b64": b64})))

    def reject(self, message: Message, reason: str) -> None:
        self.dead.append((message, reason))

    async def send(self, producer) -> list[asyncio.Future]:
        """Hand every message to the producer; the futures are done once Kafka has them."""
        futures = []
        for (topic, partition), values in self.groups.items():
            for value in json_arrays(values):  # in order, to the destination partition
                futures.append(await producer.send(OUTPUT_TOPICS[topic], value,
                                                   partition=partition))
        for message, reason in self.dead:
            futures.append(await producer.send(
                DEAD_LETTER_TOPIC, message.value or b"", key=message.key,
                headers=dead_letter_headers(message, reason)))
        metrics.records_rejected.inc(len(self.dead))
        metrics.events_counted.inc(self.counted)
        metrics.events_duplicate.inc(self.duplicates)
        metrics.records_redelivered.inc(self.redelivered)
        self.discard()
        return futures

    def discard(self) -> None:
        self.groups.clear()
        self.dead.clear()
        self.counted = self.duplicates = self.redelivered = 0


def dead_letter_headers(message: Message, reason: str) -> list[tuple[str, bytes]]:
    return [("reason", reason.encode()), ("source_topic", message.topic.encode()),
            ("source_partition", str(message.partition).encode()),
            ("source_offset", str(message.offset).encode()),
            ("source_timestamp_ms", str(int(message.timestamp * 1000)).encode())]


def log_key(key) -> str | None:
    """The record key as ``dpu_log`` keeps it: text PostgreSQL can store, else none (the raw
    value is kept whatever it holds)."""
    if not isinstance(key, bytes):
        return key
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    return text if "\x00" not in text else None


def _source(message: Message) -> counting.Source:
    return counting.Source(message.partition, message.offset, kafka_us(message))


def count_dpu_record(db: TableCache, outbox: Outbox, message: Message, now: int) -> None:
    if message.topic == EVENTS_TOPIC:
        event = read_event(message, cfg, now)
        if isinstance(event, Reject):
            outbox.reject(message, event.reason)
            return
        outcome = counting.on_event(db, event, _source(message))
        if not (outcome.redelivered or outcome.duplicate):
            outbox.counted += 1  # counted once, as the events themselves are
        outbox.add(outcome)
    else:
        placement = read_placement(message, cfg, now)
        if isinstance(placement, Reject):
            outbox.reject(message, placement.reason)
            return
        outbox.add(counting.on_placement(db, placement, _source(message)))


def count_space_record(db: TableCache, outbox: Outbox, message: Message, now: int) -> None:
    if message.topic == RESETS_TOPIC:
        reset = read_reset(message, cfg, now)
        if isinstance(reset, Reject):
            outbox.reject(message, reset.reason)
            return
        outbox.add(counting.on_reset(db, reset, _source(message), now))
    else:
        for space_id, delta in orjson.loads(message.value):
            outbox.add(counting.on_delta(db, space_id, delta, now))


def placement_of(message: Message) -> str | None:
    """The DPU a placement record is keyed by; None for any other record."""
    return record_key(message) if message.topic == PLACEMENTS_TOPIC else None


def segments(batch: list[Message], placement_of) -> Iterator[tuple[list[Message], bool]]:
    """The batch cut so that a placement shares no segment with another record of its DPU.

    Yields ``(records, placed)``; ``placed`` says the segment holds a placement. Such a segment
    is counted between two acknowledged states (``count_in_batches``): every earlier record's
    state is in Kafka before it starts, and its own before the next segment starts. Why: a
    batch cut short by a kill is read again from its committed offset, and the two input
    topics may then interleave otherwise. An event counted (its deltas sent) before a
    placement it falls under, then read again after it, would be sent to the placement's
    spaces too under the same source ids; a placement counted again without an event it had
    corrected would number its corrections otherwise. Between acknowledged states, a record
    read again meets the same placements as the first time, and sends the same records.
    """
    current: list[Message] = []
    touched: set[str | None] = set()
    placed: set[str] = set()
    for message in batch:
        dpu = placement_of(message)
        key = dpu if dpu is not None else record_key(message)
        if key in placed or (dpu is not None and key in touched):
            yield current, bool(placed)
            current, touched, placed = [], set(), set()
        current.append(message)
        touched.add(key)
        if dpu is not None:
            placed.add(dpu)
    if current:
        yield current, bool(placed)


def no_placements(message: Message) -> None:
    """For agents whose inputs hold no placements."""
    return None


class _RecordFailed(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def count_segment(db: TableCache, outbox: Outbox, handle, records: list[Message],
                  now: int) -> None:
    """Run ``handle`` on each record. One whose handling raises is filed as a dead letter and
    the segment counted again without it: its changes to the state objects were made in
    place and cannot be taken back one by one."""
    failed: dict[int, str] = {}
    while True:
        try:
            for i, message in enumerate(records):
                if message.topic == EVENTS_TOPIC:
                    outbox.log(message)
                if i in failed:
                    outbox.reject(message, failed[i])
                    continue
                db.use(message.partition)
                try:
                    handle(db, outbox, message, now)
                except Exception as exc:
                    log.exception("record %s[%d]@%d could not be counted", message.topic,
                                  message.partition, message.offset)
                    failed[i] = f"could not be counted ({type(exc).__name__}: {exc})"[:500]
                    raise _RecordFailed(i) from exc
            return
        except _RecordFailed:
            db.discard()
            outbox.discard()


async def count_in_batches(name: str, records, handle, placement_of=no_placements,
                           logs_first: bool = False) -> None:
    """Count each batch, send its outputs and write its tables; acknowledge it once Kafka has
    all of them.

    Within a batch the logs are written first, then the outputs, then the states (``write``);
    a batch whose partitions moved to another worker meanwhile is given up, unacknowledged
    (``agents.ownership``). The states' acknowledgement is not waited for before the next
    batch (a segment holding a placement excepted): the batch is acknowledged when it comes.
    """
    # A broker restart must not fail a batch: retried as long as Faust's own producer does.
    # No linger: a batch hands all its sends over before the sender runs, so they share a
    # request anyway, and each of a batch's awaited writes would wait for it.
    producer = await start_producer(cfg, app.conf.producer_request_timeout, linger_ms=0)
    writer = ChangelogWriter(TABLES, EPOCHS, lambda: producer)
    db, outbox = TableCache(TABLES, writer), Outbox(Partitioner(cfg.partitions))
    written: list[asyncio.Future] = []
    try:
        async for batch in records.batches(cfg.count_batch_size, cfg.count_batch_s):
            db.begin(app.consumer_generation_id)
            now = now_us()
            states: list[asyncio.Future] = []
            for segment, placed in segments(batch, placement_of):
                if placed and written:
                    await asyncio.gather(*written)  # the states written so far acknowledged
                    written.clear()
                count_segment(db, outbox, handle, segment, now)
                acked = await write(db, outbox, producer, segment, placed, logs_first)
                if acked is None:
                    db.discard()
                    outbox.discard()
                    break
                states.append(acked)
            else:
                # Once per batch, not per record (a microsecond more per event): the oldest
                # record bounds how stale what the batch counted was.
                metrics.produce_to_counted.labels(name).observe(
                    max(0.0, time.time() - min(message.timestamp for message in batch)))
                done = asyncio.gather(*states)
                done.add_done_callback(_acknowledge(name, batch))
                written.append(done)
                written = [f for f in written if not f.done()]
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        exit_on_agent_failure(name, exc)
    finally:
        await producer.stop()


def _acknowledge(name: str, batch: Batch) -> Callable[[asyncio.Future], None]:
    def done(future: asyncio.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # Kafka refused a state write: the batch must be read again
            exit_on_agent_failure(name, exc)
        batch.ack(app.consumer)
    return done


async def write(db: TableCache, outbox: Outbox, producer, records: list[Message],
                durable: bool, logs_first: bool) -> asyncio.Future | None:
    """Send the outputs and write the logs, then the states; returns the future of the
    states' acknowledgement, or None if the batch had to be given up (its partitions moved
    to another worker).

    States come last: one that says a record was applied has its outputs and log entries in
    Kafka. ``logs_first``: the logs are acknowledged before the outputs go, so that an output
    delivered by a batch a kill cut short has its log entry (``tables.counting.on_event``
    finds it). ``durable``: the states are acknowledged too before this returns.
    """
    if not await ownership.hold(records):
        return None
    db.write(LOGS)
    logs = await db.writer.send()
    if logs_first:
        await logs
        if not await ownership.hold(records):
            return None
    outputs = await outbox.send(producer)
    await asyncio.gather(logs, *outputs)
    if not await ownership.hold(records):
        return None  # outputs and logs sent: as after a kill, its records come again
    db.write(STATES)
    states = await db.writer.send()
    if durable:
        await states
    return states


@timer(interval=1.0, name="exit-when-left-out")
async def exit_when_left_out() -> None:
    """An idle worker the group went on without ends too (``agents.ownership``)."""
    ownership.exit_if_left_out()


@app.agent(app.channel(), name="count-dpus")
async def count_dpus(stream):
    """Its channel carries nothing: its records come from the bulk input."""
    await count_in_batches("count-dpus", dpu_records, count_dpu_record, placement_of,
                           logs_first=True)


@app.agent(app.channel(), name="count-spaces")
async def count_spaces(stream):
    """Its channel carries nothing: its records come from the bulk input."""
    await count_in_batches("count-spaces", space_records, count_space_record)
