"""Counting agents: per-DPU attribution, then per-space counts.

``count_dpus`` reads events and placements (both keyed by ``dpu_id``, so a DPU's records share a
partition), keeps each DPU's placement history and counters, and sends one delta per space of the
placement valid at the event's own time to ``space-deltas``, keyed by ``space_id``.
``count_spaces`` reads those deltas and the resets (keyed by ``space_id``) and keeps each space's
realtime count. Every state change records the source offset it came from, so a record delivered
again after a crash or rebalance changes nothing twice.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from faust.types import EventT

from pipeline import topics
from pipeline.app import app, cfg
from pipeline.metrics import metrics
from pipeline.models import DailyReset, DpuEvent, Placement, Reject, Reset, parse_event, \
    parse_placement, parse_reset
from pipeline.timeutil import now_us
from tables.faust_tables import KEY_SEP, daily_resets, delete, dpu_days, dpus, event_ids, load, \
    processing, space_days, spaces, store
from pipeline.timeutil import day_of
from tables.daily import DailySchedule
from tables.dpu_state import DpuState, reattribution
from tables.space_state import SpaceState, bucket_from_value, bucket_to_value

_RAW = dict(key_serializer="raw", value_serializer="raw")

dpu_inputs = app.topic(cfg.topic(topics.EVENTS), cfg.topic(topics.PLACEMENTS), **_RAW)
space_inputs = app.topic(cfg.topic(topics.SPACE_DELTAS), cfg.topic(topics.RESETS), **_RAW)
space_deltas = app.topic(cfg.topic(topics.SPACE_DELTAS), **_RAW)
telemetry = app.topic(cfg.topic(topics.TELEMETRY), **_RAW)
space_counts = app.topic(cfg.topic(topics.SPACE_COUNTS), **_RAW)
dead_letter = app.topic(cfg.topic(topics.DEAD_LETTER), **_RAW)
events_out = app.topic(cfg.topic(topics.EVENTS), **_RAW)
"""The events topic as a destination (``POST /events``)."""
resets_out = app.topic(cfg.topic(topics.RESETS), **_RAW)
"""The resets topic as a destination (daily resets as they fall due)."""

EVENTS_TOPIC = cfg.topic(topics.EVENTS)
RESETS_TOPIC = cfg.topic(topics.RESETS)
SOURCE_CODE = {cfg.topic(topics.EVENTS): "e", cfg.topic(topics.PLACEMENTS): "p",
               cfg.topic(topics.RESETS): "r"}
"""Short codes of source topics in applied-offset markers and derived records."""


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


def _wrong_key(event: EventT, expected: str, field: str) -> bool:
    if _key(event) != expected:
        # The state of an id lives in the partition its key hashes to: a record keyed otherwise
        # would be counted apart from the rest of its id's history.
        send_dead_letter(event, f"record key must equal {field} {expected!r}")
        return True
    return False


def handle_event(event: EventT, parsed: DpuEvent) -> None:
    msg = event.message
    source = f"e:{msg.partition}"
    state = DpuState.from_value(parsed.dpu_id, load(dpus, parsed.dpu_id))
    replay = state.already_applied(source, msg.offset)
    if parsed.event_id is not None and not replay:
        id_key = f"{parsed.dpu_id}{KEY_SEP}{parsed.event_id}"
        first = load(event_ids, id_key)
        if first is not None and first != [msg.partition, msg.offset]:
            metrics.inc("duplicates")
            state.mark_applied(source, msg.offset)
            store(dpus, parsed.dpu_id, state.to_value())
            return
        store(event_ids, id_key, [msg.partition, msg.offset])
    if not replay:
        state.count_event(parsed.ts, parsed.direction)
        # The DPU's own history, so that a placement recorded late can re-attribute this event.
        day = day_of(parsed.ts)
        day_key = f"{parsed.dpu_id}{KEY_SEP}{day}"
        crossings = load(dpu_days, day_key) or []
        crossings.append([parsed.ts, parsed.direction])
        store(dpu_days, day_key, crossings)
        state.note_day(day)
        state.mark_applied(source, msg.offset)
        store(dpus, parsed.dpu_id, state.to_value())
        metrics.inc("events")
    placement = state.placements.valid_at(parsed.ts)
    signs = placement.spaces if placement else ()
    # Derived records are sent again on a replay: downstream keeps the first copy of each.
    for seq, sign in enumerate(signs):
        space_deltas.send_soon(key=sign.space_id.encode(), value=orjson.dumps({
            "k": "e", "ts": parsed.ts, "d": parsed.direction * sign.direction,
            "dpu": parsed.dpu_id, "src": ["e", msg.partition, msg.offset, seq]}))
    telemetry.send_soon(key=parsed.dpu_id.encode(), value=orjson.dumps({
        "k": "event", "src": [msg.partition, msg.offset], "kts": int(msg.timestamp * 1_000_000),
        "dpu": parsed.dpu_id, "ts": parsed.ts, "dir": parsed.direction,
        "eid": parsed.event_id, "ins": state.ins, "outs": state.outs,
        "door": placement.doorway_id if placement else None,
        "pat": placement.installed_at if placement else None,
        "sp": [[s.space_id, s.direction] for s in signs]}))


def handle_placement(event: EventT, placement: Placement) -> None:
    msg = event.message
    source = f"p:{msg.partition}"
    state = DpuState.from_value(placement.dpu_id, load(dpus, placement.dpu_id))
    # A space is known once a placement names it: make sure its count exists.
    seq = 0
    for sign in placement.spaces:
        space_deltas.send_soon(key=sign.space_id.encode(), value=orjson.dumps({
            "k": "known", "src": ["p", msg.partition, msg.offset, seq]}))
        seq += 1
    if state.already_applied(source, msg.offset):
        return
    start, end, before = state.placements.add(placement)
    state.mark_applied(source, msg.offset)
    store(dpus, placement.dpu_id, state.to_value())
    # Events already counted in [start, end) were attributed through `before`: correct them.
    crossings = [(ts, int(d > 0), int(d < 0)) for day in state.days_between(start, end)
                 for ts, d in load(dpu_days, f"{placement.dpu_id}{KEY_SEP}{day}") or ()]
    corrections = reattribution(crossings, start, end, before, placement)
    for (space_id, ts), (entries, exits) in sorted(corrections.items(),
                                                   key=lambda c: (c[0][1], c[0][0])):
        space_deltas.send_soon(key=space_id.encode(), value=orjson.dumps({
            "k": "c", "ts": ts, "d": entries - exits, "en": entries, "ex": exits,
            "dpu": placement.dpu_id, "src": ["p", msg.partition, msg.offset, seq]}))
        seq += 1
    if corrections or before is None:
        telemetry.send_soon(key=placement.dpu_id.encode(), value=orjson.dumps({
            "k": "reattributed", "dpu": placement.dpu_id, "start": start, "end": end,
            "door": placement.doorway_id, "pat": placement.installed_at,
            "sp": [[s.space_id, s.direction] for s in placement.spaces]}))


@app.agent(dpu_inputs, name="count-dpus")
async def count_dpus(stream):
    async for batch in stream.take_events(cfg.sink_batch_size, within=cfg.sink_flush_s):
        now = now_us()
        for event in batch:
            with processing(event):
                msg = event.message
                raw = msg.value or b""
                if msg.topic == EVENTS_TOPIC:
                    parsed = parse_event(raw, now_us=now, max_bytes=cfg.max_record_bytes,
                                         max_future_s=cfg.max_future_s)
                    if isinstance(parsed, Reject):
                        send_dead_letter(event, parsed.reason)
                    elif not _wrong_key(event, parsed.dpu_id, "dpu_id"):
                        handle_event(event, parsed)
                else:
                    placement = parse_placement(raw, max_bytes=cfg.max_record_bytes)
                    if isinstance(placement, Reject):
                        send_dead_letter(event, placement.reason)
                    elif not _wrong_key(event, placement.dpu_id, "dpu_id"):
                        handle_placement(event, placement)


def _emit_count(state: SpaceState, record: dict) -> None:
    record.update(space=state.space_id, count=state.count, at=state.updated_at)
    space_counts.send_soon(key=state.space_id.encode(), value=orjson.dumps(record))


def handle_delta(space_id: str, event: EventT) -> None:
    delta = orjson.loads(event.message.value)
    code, partition, offset, seq = delta["src"]
    source = f"{code}:{partition}"
    state = SpaceState.from_value(space_id, load(spaces, space_id))
    if state.already_applied(source, offset, seq):
        metrics.inc("redelivered_deltas")
        return
    state.mark_applied(source, offset, seq)
    state.updated_at = now_us()
    if delta["k"] == "known":
        store(spaces, space_id, state.to_value())
        _emit_count(state, {"k": "known"})
        return
    ts, d = delta["ts"], delta["d"]
    counted = state.counts_at_realtime(ts)
    day_key = f"{space_id}{KEY_SEP}{day_of(ts)}"
    bucket = state.add_delta(ts, d, bucket_from_value(load(space_days, day_key)))
    if bucket is not None:
        store(space_days, day_key, bucket_to_value(bucket))
    store(spaces, space_id, state.to_value())
    _emit_count(state, {"k": delta["k"], "ts": ts, "d": d, "dpu": delta["dpu"],
                        "en": delta.get("en", max(d, 0)), "ex": delta.get("ex", max(-d, 0)),
                        "src": delta["src"], "counted": counted})


def handle_reset(event: EventT, reset: Reset | DailyReset) -> None:
    msg = event.message
    source = f"r:{msg.partition}"
    state = SpaceState.from_value(reset.space_id, load(spaces, reset.space_id))
    if state.already_applied(source, msg.offset):
        return
    state.mark_applied(source, msg.offset)
    state.updated_at = now_us()
    if isinstance(reset, DailyReset):
        store(spaces, reset.space_id, state.to_value())
        if reset.time is None:
            delete(daily_resets, reset.space_id)
        else:
            store(daily_resets, reset.space_id, DailySchedule(
                reset.time, reset.tz, reset.count, int(msg.timestamp * 1_000_000)).to_value())
        return
    daily = load(daily_resets, reset.space_id)
    if daily is not None:
        schedule = DailySchedule.from_value(daily)
        if schedule.is_instant(reset.at) and (schedule.last is None or reset.at > schedule.last):
            store(daily_resets, reset.space_id, replace(schedule, last=reset.at).to_value())
    dropped = state.add_reset(
        reset.at, reset.count,
        lambda day: bucket_from_value(load(space_days, f"{reset.space_id}{KEY_SEP}{day}")))
    for day in dropped:
        delete(space_days, f"{reset.space_id}{KEY_SEP}{day}")
    store(spaces, reset.space_id, state.to_value())
    _emit_count(state, {"k": "reset", "ts": reset.at, "reset": reset.count,
                        "src": ["r", msg.partition, msg.offset, 0]})


@app.agent(space_inputs, name="count-spaces")
async def count_spaces(stream):
    async for batch in stream.take_events(cfg.sink_batch_size, within=cfg.sink_flush_s):
        for event in batch:
            with processing(event):
                msg = event.message
                if msg.topic == RESETS_TOPIC:
                    reset = parse_reset(msg.value or b"", max_bytes=cfg.max_record_bytes)
                    if isinstance(reset, Reject):
                        send_dead_letter(event, reset.reason)
                    elif not _wrong_key(event, reset.space_id, "space_id"):
                        handle_reset(event, reset)
                else:
                    space_id = _key(event)
                    if space_id:
                        handle_delta(space_id, event)
