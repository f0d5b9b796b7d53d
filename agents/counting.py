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
from pipeline.metrics import metrics
from pipeline.models import Reject, parse_event, parse_placement, parse_reset
from pipeline.timeutil import now_us
from tables import counting
from tables.faust_tables import FaustStore, processing

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
STORE = FaustStore()


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


def _send(outcome: counting.Outcome) -> None:
    for out in outcome.out:
        OUTPUTS[out.topic].send_soon(key=out.key.encode(), value=orjson.dumps(out.value))
    if outcome.duplicate:
        metrics.inc("duplicates")
    if outcome.redelivered:
        metrics.inc("redelivered")


def count_dpu_record(event: EventT, now: int) -> None:
    msg = event.message
    raw = msg.value or b""
    if msg.topic == EVENTS_TOPIC:
        parsed = parse_event(raw, now_us=now, max_bytes=cfg.max_record_bytes,
                             max_future_s=cfg.max_future_s)
        if isinstance(parsed, Reject):
            send_dead_letter(event, parsed.reason)
        elif _right_key(event, parsed.dpu_id, "dpu_id"):
            metrics.inc("events")
            _send(counting.on_event(STORE, parsed, _source(event)))
    else:
        placement = parse_placement(raw, max_bytes=cfg.max_record_bytes)
        if isinstance(placement, Reject):
            send_dead_letter(event, placement.reason)
        elif _right_key(event, placement.dpu_id, "dpu_id"):
            _send(counting.on_placement(STORE, placement, _source(event)))


def count_space_record(event: EventT, now: int) -> None:
    msg = event.message
    if msg.topic == RESETS_TOPIC:
        reset = parse_reset(msg.value or b"", max_bytes=cfg.max_record_bytes)
        if isinstance(reset, Reject):
            send_dead_letter(event, reset.reason)
        elif _right_key(event, reset.space_id, "space_id"):
            _send(counting.on_reset(STORE, reset, _source(event), now))
    else:
        space_id = _key(event)
        if space_id:
            _send(counting.on_delta(STORE, space_id, orjson.loads(msg.value), now))


@app.agent(dpu_inputs, name="count-dpus")
async def count_dpus(stream):
    async for batch in stream.take_events(cfg.sink_batch_size, within=cfg.sink_flush_s):
        now = now_us()
        for event in batch:
            with processing(event):
                count_dpu_record(event, now)


@app.agent(space_inputs, name="count-spaces")
async def count_spaces(stream):
    async for batch in stream.take_events(cfg.sink_batch_size, within=cfg.sink_flush_s):
        now = now_us()
        for event in batch:
            with processing(event):
                count_space_record(event, now)
