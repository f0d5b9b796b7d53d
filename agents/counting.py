"""Counting agents: per-DPU attribution, then per-space counts (logic in ``tables/counting.py``).

``count_dpus`` reads events and placements (both keyed by ``dpu_id``, so a DPU's records share a
partition) and sends one delta per space of the placement valid at the event's own time to
``space-deltas``, keyed by ``space_id``. ``count_spaces`` reads those deltas and the resets (keyed
by ``space_id``) and keeps each space's realtime count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterator

import orjson
from faust.types import EventT

from agents.batching import applied_batches, exit_on_agent_failure
from agents.ownership import Ownership
from pipeline import topics
from pipeline.app import app, cfg
from pipeline.messages import json_arrays
from pipeline.metrics import metrics
from pipeline.models import Reject, parse_event, parse_placement, parse_reset
from pipeline.timeutil import clamped, now_us
from tables import counting
from tables.faust_tables import BatchStore, processing

_RAW = dict(key_serializer="raw", value_serializer="raw")

dpu_inputs = app.topic(cfg.topic(topics.EVENTS), cfg.topic(topics.PLACEMENTS), **_RAW)
space_inputs = app.topic(cfg.topic(topics.SPACE_DELTAS), cfg.topic(topics.RESETS), **_RAW)
dead_letter = app.topic(cfg.topic(topics.DEAD_LETTER), **_RAW)
events_out = app.topic(cfg.topic(topics.EVENTS), **_RAW)
"""The events topic as a destination (``POST /events``)."""
resets_out = app.topic(cfg.topic(topics.RESETS), **_RAW)
"""The resets topic as a destination (daily resets as they fall due)."""
OUTPUTS = {name: app.topic(cfg.topic(name), **_RAW)
           for name in (counting.DELTAS, counting.TELEMETRY, counting.COUNTS)}
telemetry, space_counts = OUTPUTS[counting.TELEMETRY], OUTPUTS[counting.COUNTS]

EVENTS_TOPIC = cfg.topic(topics.EVENTS)
PLACEMENTS_TOPIC = cfg.topic(topics.PLACEMENTS)
RESETS_TOPIC = cfg.topic(topics.RESETS)
log = logging.getLogger(__name__)
ownership = Ownership(app, cfg.session_timeout_s)


class Outbox:
    """Records to send for one batch: outputs one Kafka message per destination and key, and
    dead letters.

    A message carries the list of values for its key in order: far fewer messages than records,
    and the per-key order (all that the next stage relies on) is kept. A long list goes as
    several messages, in order, each below Kafka's size limit. Nothing is sent before ``send``,
    so a batch given up sends nothing.
    """

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], list] = {}
        self.dead: list[tuple[EventT, str]] = []
        self._added: list[tuple[str, str]] = []
        """Groups appended to since ``begin``, in order, so a record's outputs can be undone."""
        self._dead_before = 0

    def begin(self) -> None:
        """A record starts: what it adds can be taken back with ``undo_record``."""
        self._added = []
        self._dead_before = len(self.dead)

    def undo_record(self) -> None:
        for group in reversed(self._added):
            values = self.groups[group]
            values.pop()
            if not values:
                del self.groups[group]
        del self.dead[self._dead_before:]
        self._added = []

    def add(self, outcome: counting.Outcome) -> None:
        for out in outcome.out:
            group = (out.topic, out.key)
            self.groups.setdefault(group, []).append(out.value)
            self._added.append(group)
        if outcome.duplicate:
            metrics.inc("duplicates")
        if outcome.redelivered:
            metrics.inc("redelivered")

    def reject(self, event: EventT, reason: str) -> None:
        self.dead.append((event, reason))

    def send(self) -> None:
        for (topic, key), values in self.groups.items():
            for value in json_arrays(values):  # in order, to the key's one partition
                OUTPUTS[topic].send_soon(key=key.encode(), value=value)
        for event, reason in self.dead:
            send_dead_letter(event, reason)
        self.discard()

    def discard(self) -> None:
        self.groups.clear()
        self.dead.clear()
        self._added = []


def send_dead_letter(event: EventT, reason: str) -> None:
    msg = event.message
    metrics.inc("rejects")
    dead_letter.send_soon(
        key=msg.key, value=msg.value or b"",
        headers=[("reason", reason.encode()), ("source_topic", msg.topic.encode()),
                 ("source_partition", str(msg.partition).encode()),
                 ("source_offset", str(msg.offset).encode()),
                 ("source_timestamp_ms", str(int(msg.timestamp * 1000)).encode())])


def _key(event: EventT) -> str | None:
    key = event.message.key
    if key is None:
        return None
    try:
        return key.decode() if isinstance(key, bytes) else str(key)
    except UnicodeDecodeError:
        return None


def _right_key(outbox: Outbox, event: EventT, expected: str, field: str) -> bool:
    if _key(event) == expected:
        return True
    # The state of an id lives in the partition its key hashes to: a record keyed otherwise
    # would be counted apart from the rest of its id's history.
    outbox.reject(event, f"record key must equal {field} {expected!r}")
    return False


def kafka_us(event: EventT) -> int:
    """The record's Kafka timestamp, clamped to the instants every sink can store: a producer
    sets it to anything, and one out of range must not fail the rows of a valid record."""
    return clamped(int(event.message.timestamp * 1_000_000))


def _source(event: EventT) -> counting.Source:
    msg = event.message
    return counting.Source(msg.partition, msg.offset, kafka_us(event))


def sent_at(event: EventT, now: int) -> int:
    """The wall clock when the record was sent (its Kafka timestamp), that instants are checked
    against: a replay then refuses and accepts exactly what the first count did."""
    ts = kafka_us(event)
    return ts if ts > 0 else now


def count_dpu_record(db: BatchStore, outbox: Outbox, event: EventT, now: int) -> None:
    msg = event.message
    raw = msg.value or b""
    if msg.topic == EVENTS_TOPIC:
        parsed = parse_event(raw, now_us=sent_at(event, now), max_bytes=cfg.max_record_bytes,
                             max_future_s=cfg.max_future_s)
        if isinstance(parsed, Reject):
            outbox.reject(event, parsed.reason)
        elif _right_key(outbox, event, parsed.dpu_id, "dpu_id"):
            outcome = counting.on_event(db, parsed, _source(event))
            if not (outcome.redelivered or outcome.duplicate):
                metrics.inc("events")  # counted once, as the events themselves are
            outbox.add(outcome)
    else:
        placement = parse_placement(raw, max_bytes=cfg.max_record_bytes,
                                    now_us=sent_at(event, now), max_future_s=cfg.max_future_s)
        if isinstance(placement, Reject):
            outbox.reject(event, placement.reason)
        elif _right_key(outbox, event, placement.dpu_id, "dpu_id"):
            outbox.add(counting.on_placement(db, placement, _source(event)))


def count_space_record(db: BatchStore, outbox: Outbox, event: EventT, now: int) -> None:
    msg = event.message
    if msg.topic == RESETS_TOPIC:
        reset = parse_reset(msg.value or b"", max_bytes=cfg.max_record_bytes,
                            now_us=sent_at(event, now), max_future_s=cfg.max_future_s)
        if isinstance(reset, Reject):
            outbox.reject(event, reset.reason)
        elif _right_key(outbox, event, reset.space_id, "space_id"):
            outbox.add(counting.on_reset(db, reset, _source(event), now))
    else:
        space_id = _key(event)
        if space_id:
            for delta in orjson.loads(msg.value):
                outbox.add(counting.on_delta(db, space_id, delta, now))


def placement_of(event: EventT) -> str | None:
    """The DPU a placement record is keyed by; None for any other record."""
    return _key(event) if event.message.topic == PLACEMENTS_TOPIC else None


def segments(batch: list[EventT], placement_of) -> Iterator[tuple[list[EventT], bool]]:
    """The batch cut so that a placement shares no segment with another record of its DPU.

    Yields ``(events, placed)``; ``placed`` says the segment holds a placement. Such a segment
    is counted between two acknowledged states (``count_in_batches``): every earlier record's
    state is in Kafka before it starts, and its own before the next segment starts. Why: a
    batch cut short by a kill is read again from its committed offset, and the two input
    topics may then interleave otherwise. An event counted (its deltas sent) before a
    placement it falls under, then read again after it, would be sent to the placement's
    spaces too under the same source ids; a placement counted again without an event it had
    corrected would number its corrections otherwise. Between acknowledged states, a record
    read again meets the same placements as the first time, and sends the same records.
    """
    current: list[EventT] = []
    touched: set[str | None] = set()
    placed: set[str] = set()
    for event in batch:
        dpu = placement_of(event)
        key = dpu if dpu is not None else _key(event)
        if key in placed or (dpu is not None and key in touched):
            yield current, bool(placed)
            current, touched, placed = [], set(), set()
        current.append(event)
        touched.add(key)
        if dpu is not None:
            placed.add(dpu)
    if current:
        yield current, bool(placed)


def no_placements(event: EventT) -> None:
    """For agents whose inputs hold no placements."""
    return None


async def count_in_batches(name: str, stream, handle, placement_of=no_placements,
                           logs_first: bool = False) -> None:
    """Run ``handle`` on each event of each batch, then send the outputs and write the tables.

    Both happen before the batch is acknowledged, and Faust flushes its producer before it commits
    offsets: a batch's state and outputs are in Kafka before its offsets are. Within a batch the
    outputs and logs are acknowledged before the states are written (``BatchStore.write_states``).
    A record whose handling raises is taken back and sent to the dead letters; a batch whose
    partitions moved to another worker meanwhile is given up (``agents.ownership``).
    """
    db, outbox = BatchStore(), Outbox()
    try:
        async for batch in applied_batches(stream, cfg.sink_batch_size, cfg.count_batch_s):
            now = now_us()
            for events, placed in segments(batch, placement_of):
                if placed:
                    await app.producer.flush()  # the states written so far acknowledged
                for event in events:
                    apply_record(db, outbox, handle, event, now)
                if not await write(db, outbox, batch, placed, logs_first):
                    db.discard()
                    outbox.discard()
                    break
            else:
                batch.applied()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        exit_on_agent_failure(name, exc)


def apply_record(db: BatchStore, outbox: Outbox, handle, event: EventT, now: int) -> None:
    db.use(event)
    outbox.begin()
    with processing(event):
        try:
            handle(db, outbox, event, now)
        except Exception as exc:
            # Its writes and outputs are taken back: the record changes no count, and the
            # records around it are counted.
            db.undo_record()
            outbox.undo_record()
            log.exception("record %s[%d]@%d could not be counted", event.message.topic,
                          event.message.partition, event.message.offset)
            outbox.reject(event, f"could not be counted ({type(exc).__name__}: {exc})"[:500])


async def write(db: BatchStore, outbox: Outbox, batch, durable: bool, logs_first: bool) -> bool:
    """Send the outputs and write the logs, then the states; False if the batch had to be
    given up (its partitions moved to another worker).

    States come last: one that says a record was applied has its outputs and log entries in
    Kafka. ``logs_first``: the logs are acknowledged before the outputs go, so that an output
    delivered by a batch a kill cut short has its log entry (``tables.counting.on_event``
    finds it). ``durable``: the states are acknowledged too before this returns.
    """
    if not await ownership.hold(batch):
        return False
    db.write_logs()
    if logs_first:
        await app.producer.flush()
        if not await ownership.hold(batch):
            return False
    outbox.send()
    await app.producer.flush()
    if not await ownership.hold(batch):
        return False  # outputs and logs sent: as after a kill, its records come again
    db.write_states()
    if durable:
        await app.producer.flush()
    return True


@app.timer(interval=1.0, name="exit-when-left-out")
async def exit_when_left_out() -> None:
    """An idle worker the group went on without ends too (``agents.ownership``)."""
    ownership.exit_if_left_out()


@app.agent(dpu_inputs, name="count-dpus")
async def count_dpus(stream):
    await count_in_batches("count-dpus", stream, count_dpu_record, placement_of,
                           logs_first=True)


@app.agent(space_inputs, name="count-spaces")
async def count_spaces(stream):
    await count_in_batches("count-spaces", stream, count_space_record)
