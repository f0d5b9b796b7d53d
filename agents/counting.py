"""Counting agents: per-DPU attribution, then per-space counts (logic in ``tables/counting.py``).

``count_dpus`` reads events and placements (both keyed by ``dpu_id``, so a DPU's records share a
partition) and sends one delta per space of the placement valid at the event's own time to
``space-deltas``, keyed by ``space_id``. ``count_spaces`` reads those deltas and the resets (keyed
by ``space_id``) and keeps each space's realtime count.
"""

from __future__ import annotations

import orjson
from faust.types import EventT

from pipeline import topics
from pipeline.app import app, cfg
from pipeline.messages import json_arrays
from pipeline.metrics import metrics
from pipeline.models import Reject, parse_event, parse_placement, parse_reset
from pipeline.timeutil import now_us
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
RESETS_TOPIC = cfg.topic(topics.RESETS)


class Outbox:
    """Records to send for one batch, one Kafka message per destination and key.

    A message carries the list of values for its key in order: far fewer messages than records,
    and the per-key order (all that the next stage relies on) is kept. A long list goes as
    several messages, in order, each below Kafka's size limit.
    """

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], list] = {}

    def add(self, outcome: counting.Outcome) -> None:
        for out in outcome.out:
            self.groups.setdefault((out.topic, out.key), []).append(out.value)
        if outcome.duplicate:
            metrics.inc("duplicates")
        if outcome.redelivered:
            metrics.inc("redelivered")

    def send(self) -> None:
        for (topic, key), values in self.groups.items():
            for value in json_arrays(values):  # in order, to the key's one partition
                OUTPUTS[topic].send_soon(key=key.encode(), value=value)
        self.groups.clear()


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


def _right_key(event: EventT, expected: str, field: str) -> bool:
    if _key(event) == expected:
        return True
    # The state of an id lives in the partition its key hashes to: a record keyed otherwise
    # would be counted apart from the rest of its id's history.
    send_dead_letter(event, f"record key must equal {field} {expected!r}")
    return False


def _source(event: EventT) -> counting.Source:
    msg = event.message
    return counting.Source(msg.partition, msg.offset, int(msg.timestamp * 1_000_000))


def count_dpu_record(db: BatchStore, outbox: Outbox, event: EventT, now: int) -> None:
    msg = event.message
    raw = msg.value or b""
    if msg.topic == EVENTS_TOPIC:
        parsed = parse_event(raw, now_us=now, max_bytes=cfg.max_record_bytes,
                             max_future_s=cfg.max_future_s)
        if isinstance(parsed, Reject):
            send_dead_letter(event, parsed.reason)
        elif _right_key(event, parsed.dpu_id, "dpu_id"):
            outcome = counting.on_event(db, parsed, _source(event))
            if not (outcome.redelivered or outcome.duplicate):
                metrics.inc("events")  # counted once, as the events themselves are
            outbox.add(outcome)
    else:
        placement = parse_placement(raw, max_bytes=cfg.max_record_bytes)
        if isinstance(placement, Reject):
            send_dead_letter(event, placement.reason)
        elif _right_key(event, placement.dpu_id, "dpu_id"):
            outbox.add(counting.on_placement(db, placement, _source(event)))


def count_space_record(db: BatchStore, outbox: Outbox, event: EventT, now: int) -> None:
    msg = event.message
    if msg.topic == RESETS_TOPIC:
        reset = parse_reset(msg.value or b"", max_bytes=cfg.max_record_bytes)
        if isinstance(reset, Reject):
            send_dead_letter(event, reset.reason)
        elif _right_key(event, reset.space_id, "space_id"):
            outbox.add(counting.on_reset(db, reset, _source(event), now))
    else:
        space_id = _key(event)
        if space_id:
            for delta in orjson.loads(msg.value):
                outbox.add(counting.on_delta(db, space_id, delta, now))


async def count_in_batches(stream, handle) -> None:
    """Run ``handle`` on each event of each batch, then send the outputs and write the tables.

    Both happen before the batch is acknowledged, and Faust flushes its producer before it commits
    offsets: a batch's state and outputs are in Kafka before its offsets are. Within a batch the
    outputs and logs are acknowledged before the states are written (see ``BatchStore.flush``).
    """
    db, outbox = BatchStore(), Outbox()
    async for batch in stream.take_events(cfg.sink_batch_size, within=cfg.count_batch_s):
        now = now_us()
        for event in batch:
            db.use(event)
            with processing(event):
                handle(db, outbox, event, now)
        # Outputs and logs acknowledged before the states: a batch whose state says "applied"
        # has had every output and log entry delivered, so a redelivered record may rely on
        # that. The states need no wait: Faust flushes before it commits the batch's offsets.
        outbox.send()
        await db.flush()


@app.agent(dpu_inputs, name="count-dpus")
async def count_dpus(stream):
    await count_in_batches(stream, count_dpu_record)


@app.agent(space_inputs, name="count-spaces")
async def count_spaces(stream):
    await count_in_batches(stream, count_space_record)
