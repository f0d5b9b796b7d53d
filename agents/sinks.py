"""Sink agents: each drains one topic in batches into PostgreSQL (and Redis).

A batch is acknowledged only after its sinks flushed it (``agents.batching``), and every write is
an upsert keyed by the record's Kafka source: at-least-once delivery, written exactly once. An
input record the sinks cannot write (rows not even buildable, or refused by the database) is
filed in ``dpu_rejects`` and the rest go on (``sinks.base``).
"""

from __future__ import annotations

import asyncio
import base64
from functools import partial
from typing import Any, Callable, Iterable

import orjson
from faust.types import Message

from agents.batching import applied_batches, exit_on_agent_failure
from agents.counting import BULK, EVENTS_TOPIC, PLACEMENTS_TOPIC, RESETS_TOPIC, dead_letter, \
    log_key, space_counts, telemetry
from pipeline.app import app, cfg
from pipeline.bulk_input import Batch
from pipeline.history import RECONCILED_COLUMNS, RECONCILED_TYPES, SPACE_COUNT_COLUMNS, \
    SPACE_COUNT_TYPES
from pipeline.inputs import kafka_us, read_placement, read_reset
from pipeline.models import DailyReset, Placement, Reject, Reset
from pipeline.reconcile import MARK_DIRTY, MARK_SPACE
from pipeline.timeutil import clamped, from_us, now_us
from sinks.base import BatchingSink, Item, RejectSource, Source, describe, printable
from sinks.postgres import CopyMerge, PostgresSink
from sinks.redis_mirror import RedisMirror, dpu_change, space_change

placement_records = BULK.subscribe("sink-placements", [PLACEMENTS_TOPIC])
reset_records = BULK.subscribe("sink-resets", [RESETS_TOPIC])

REGISTER = {
    "space": "INSERT INTO spaces (space_id) VALUES (%s) ON CONFLICT DO NOTHING",
    "doorway": "INSERT INTO doorways (doorway_id) VALUES (%s) ON CONFLICT DO NOTHING",
    "dpu": "INSERT INTO dpus (dpu_id) VALUES (%s) ON CONFLICT DO NOTHING",
}

log_sink = PostgresSink("dpu_log", cfg.database_url, {
    "log": CopyMerge("dpu_log_in", "dpu_log",
                     ("topic", "partition", "offset", "kafka_ts", "dpu_id", "raw"),
                     ("text", "int", "int", "us", "text", "bytea"),
                     "INSERT INTO dpu_log SELECT * FROM dpu_log_in ON CONFLICT DO NOTHING"),
})

REGISTRIES = frozenset(REGISTER)
"""Registry inserts: once per id and sink is enough."""

telemetry_sink = PostgresSink("dpu_telemetry", cfg.database_url, {
    "dpu": REGISTER["dpu"],
    "telemetry": CopyMerge(
        "dpu_telemetry_in", "dpu_telemetry",
        ("dpu_id", "event_ts", "direction", "event_id", "ins", "outs", "net", "doorway_id",
         "placement_at", "spaces", "source_partition", "source_offset", "kafka_ts"),
        ("text", "us", "int", "text", "int", "int", "int", "text", "us", "json", "int", "int",
         "us"),
        "INSERT INTO dpu_telemetry SELECT * FROM dpu_telemetry_in ON CONFLICT DO NOTHING"),
    # A placement recorded late re-attributes the DPU's events in its interval.
    "reattributed": "UPDATE dpu_telemetry SET doorway_id = %s, placement_at = %s, spaces = %s, "
                    "reconciled_at = now() WHERE dpu_id = %s AND event_ts >= %s "
                    "AND (%s::timestamptz IS NULL OR event_ts < %s)",
}, once=REGISTRIES)

space_count_sink = PostgresSink("space_count", cfg.database_url, {
    "space": REGISTER["space"],
    # Only the rows really inserted feed the rollups, and of them only those not in time
    # order mark the space for reconciliation: a batch delivered twice changes nothing the
    # second time.
    "count": CopyMerge(
        "space_count_in", "space_count", SPACE_COUNT_COLUMNS + RECONCILED_COLUMNS,
        SPACE_COUNT_TYPES + RECONCILED_TYPES,
        "WITH ins AS (INSERT INTO space_count SELECT * FROM space_count_in ON CONFLICT DO NOTHING "
        "  RETURNING space_id, event_ts, delta, entries, exits, count_reconciled), "
        "rollup AS (INSERT INTO space_count_hourly (space_id, hour, delta, entries, exits) "
        "  SELECT space_id, date_trunc('hour', event_ts, 'UTC'), sum(delta), sum(entries), "
        "  sum(exits) FROM ins GROUP BY 1, 2 ON CONFLICT (space_id, hour) DO UPDATE SET "
        "  delta = space_count_hourly.delta + excluded.delta, "
        "  entries = space_count_hourly.entries + excluded.entries, "
        "  exits = space_count_hourly.exits + excluded.exits), "
        "daily AS (INSERT INTO space_count_daily (space_id, day, delta, entries, exits) "
        "  SELECT space_id, date_trunc('day', event_ts, 'UTC'), sum(delta), sum(entries), "
        "  sum(exits) FROM ins GROUP BY 1, 2 ON CONFLICT (space_id, day) DO UPDATE SET "
        "  delta = space_count_daily.delta + excluded.delta, "
        "  entries = space_count_daily.entries + excluded.entries, "
        "  exits = space_count_daily.exits + excluded.exits) "
        "INSERT INTO space_dirty (space_id, since) SELECT space_id, min(event_ts) FROM ins "
        "WHERE count_reconciled IS NULL GROUP BY 1 " + MARK_DIRTY),
    # A reset marks its space here too, behind every row counted before it: the resets sink's
    # mark can be taken before those rows land, and they carry the count before the reset.
    "dirty": MARK_SPACE,
}, once=REGISTRIES)

rejects_sink = PostgresSink("dpu_rejects", cfg.database_url, {
    "reject": "INSERT INTO dpu_rejects (source_topic, source_partition, source_offset, reason, "
              "raw, kafka_ts, record_key) VALUES (%s, %s, %s, %s, %s, %s, %s) "
              "ON CONFLICT DO NOTHING",
})

_KEPT = ("EXISTS (SELECT 1 FROM dpu_placements WHERE dpu_id = %s AND installed_at = %s "
         "AND source_offset = %s)")
"""The placement record written is the one kept for its instant."""

placements_sink = PostgresSink("dpu_location", cfg.database_url, {
    **REGISTER,
    # Of two placements of a DPU for one instant, the later record on the topic wins (as in the
    # tables), whatever order they are written in: the rows follow the placement kept.
    "placement": "INSERT INTO dpu_placements (dpu_id, installed_at, doorway_id, spaces, "
                 "source_partition, source_offset) VALUES (%s, %s, %s, %s, %s, %s) "
                 "ON CONFLICT (dpu_id, installed_at) DO UPDATE SET doorway_id = "
                 "excluded.doorway_id, spaces = excluded.spaces, source_partition = "
                 "excluded.source_partition, source_offset = excluded.source_offset "
                 "WHERE dpu_placements.source_offset <= excluded.source_offset",
    "clear": f"DELETE FROM dpu_location WHERE dpu_id = %s AND installed = %s AND {_KEPT}",
    "location": "INSERT INTO dpu_location (dpu_id, space_id, doorway_id, installed, direction) "
                f"SELECT %s, %s, %s, %s, %s WHERE {_KEPT} "
                "ON CONFLICT (dpu_id, installed, space_id) "
                "DO UPDATE SET doorway_id = excluded.doorway_id, direction = excluded.direction",
    # `until` and `current` follow from the DPU's whole history, whatever order it arrived in.
    "refresh": "UPDATE dpu_location l SET \"until\" = n.next_at, \"current\" = n.next_at IS NULL "
               "FROM (SELECT installed_at, lead(installed_at) OVER (ORDER BY installed_at) "
               "AS next_at FROM dpu_placements WHERE dpu_id = %s) n "
               "WHERE l.dpu_id = %s AND l.installed = n.installed_at",
}, once=REGISTRIES)

resets_sink = PostgresSink("space_resets", cfg.database_url, {
    "space": REGISTER["space"],
    "reset": "INSERT INTO space_resets (space_id, at, count) VALUES (%s, %s, %s) "
             "ON CONFLICT (space_id, at) DO UPDATE SET count = excluded.count",
    "dirty": MARK_SPACE,
    "daily": "INSERT INTO space_daily_resets (space_id, local_time, tz, count, since) "
             "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (space_id) DO UPDATE SET local_time = "
             "excluded.local_time, tz = excluded.tz, count = excluded.count, "
             "since = excluded.since, updated_at = now()",
    "daily_off": "DELETE FROM space_daily_resets WHERE space_id = %s",
}, once=REGISTRIES)

space_mirror = RedisMirror(cfg.redis_url, cfg.redis_prefix)
dpu_mirror = RedisMirror(cfg.redis_url, cfg.redis_prefix)

SINKS: list[BatchingSink] = [log_sink, telemetry_sink, space_count_sink, rejects_sink,
                             placements_sink, resets_sink, space_mirror, dpu_mirror]
"""Every sink of this worker, for ``/status`` and ``/metrics``."""

Rows = list[tuple[BatchingSink, list]]
"""What one input record gives each sink."""


async def stream_batches(stream):
    """A Faust stream's batches as ``(messages, acknowledge)``."""
    async for batch in applied_batches(stream, cfg.sink_batch_size, cfg.sink_flush_s):
        yield [event.message for event in batch], batch.applied


async def bulk_batches(records):
    """A bulk subscription's batches as ``(messages, acknowledge)``."""
    async for batch in records.batches(cfg.sink_batch_size, cfg.sink_flush_s):
        yield batch, (lambda batch=batch: Batch.ack(batch, app.consumer))


async def drain(name: str, batches, sinks: Iterable[BatchingSink],
                add: Callable[[Message], None]) -> None:
    """Feed each batch's records to ``add``, then flush every sink; acknowledge the batch once
    all are written (a cancelled flush leaves it unacknowledged). A batch of grouped messages
    can hold many rows: the sinks are flushed along the way too, every ``sink_rows``."""
    sinks = list(sinks)
    try:
        async for messages, acknowledge in batches:
            for message in messages:
                add(message)
                if sum(sink.stats.pending for sink in sinks) >= cfg.sink_rows:
                    for sink in sinks:
                        await sink.flush()
                else:
                    # A grouped message holds thousands of rows: let the counting agents run
                    # between two (the realtime view waits for them, not for the sinks).
                    await asyncio.sleep(0)
            for sink in sinks:
                await sink.flush()
            acknowledge()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        exit_on_agent_failure(name, exc)


def _ms(message: Message):
    return from_us(kafka_us(message))


def source_of(message: Message, raw: Any = None) -> RejectSource:
    return RejectSource(message.topic, message.partition, message.offset,
                        message.value or b"" if raw is None else raw, _ms(message),
                        log_key(message.key))


def unreadable(exc: Exception) -> str:
    """The reason filed with an input record whose rows cannot be built."""
    return f"could not be read: {describe(exc)}"


def rows_or_reason(build: Callable[[], Rows]) -> Rows | str:
    """The rows ``build`` makes of one input record, or why it cannot make them."""
    try:
        return build()
    except Exception as exc:
        return unreadable(exc)


def add_rows(source: Source, build: Callable[[], Rows], refused_to: BatchingSink) -> None:
    """Buffer the rows ``build`` makes of one input record; one it cannot make rows of is
    refused (filed by ``refused_to``), and the records around it go on."""
    parts = rows_or_reason(build)
    if isinstance(parts, str):
        refused_to.add_refused(source, parts)
        return
    for sink, rows in parts:
        sink.add_item(rows, source)


def each_value(message: Message, build: Callable[[Any, tuple[int, int]], Rows],
               refused_to: BatchingSink) -> None:
    """The ``[key, value]`` pairs a grouped message holds, each value an input record of its
    own (filed alone, with the message's source, if its rows cannot be built or written).
    ``build`` gets the value and its version for the Redis mirror (``sinks.redis_mirror``).

    The rows of all values go to each sink as one item that the sink splits per value only
    if the database refuses it (``sinks.base.Item.split``): an item, a source and a closure
    per value and sink, each holding its decoded value until written, were most of the sinks'
    own work (with the mirror's dicts, building rows took 45 µs an event offline; now 19).
    """
    try:
        pairs = orjson.loads(message.value)
    except orjson.JSONDecodeError as exc:
        refused_to.add_refused(source_of(message), unreadable(exc))
        return
    offset = message.offset
    grouped: dict[BatchingSink, list] = {}
    try:
        for i, (key, value) in enumerate(pairs):
            for sink, rows in build(value, (offset, i)):
                if sink in grouped:
                    grouped[sink] += rows
                else:
                    grouped[sink] = list(rows)
    except Exception:  # a value whose rows cannot be built: each value on its own
        base = source_of(message)
        for i, (key, value) in enumerate(pairs):
            add_rows((base, value, key), lambda: build(value, (offset, i)), refused_to)
        return
    base = source_of(message)
    for sink, rows in grouped.items():
        sink.add_item(rows, base, partial(values_of, message, build, sink))


def values_of(message: Message, build: Callable[[Any, tuple[int, int]], Rows],
              sink: BatchingSink) -> list[Item]:
    """Each value of a grouped message as an item of its own: its rows for ``sink``, or why
    they cannot be built."""
    base, offset = source_of(message), message.offset
    items: list[Item] = []
    for i, (key, value) in enumerate(orjson.loads(message.value)):
        source = (base, value, key)
        parts = rows_or_reason(lambda: build(value, (offset, i)))
        if isinstance(parts, str):
            items.append(Item([], source, parts))
        else:
            items.append(Item([row for to, rows in parts if to is sink for row in rows], source))
    return items


def telemetry_rows(t: dict, ver: tuple[int, int]) -> Rows:
    kind = t["k"]
    if kind == "log":
        raw = base64.b64decode(t["raw"]) if t["b64"] else t["raw"].encode()
        return [(log_sink, [("log", (EVENTS_TOPIC, t["p"], t["o"], t["kts"], t["key"], raw))])]
    if kind == "reattributed":
        end = from_us(t["end"]) if t["end"] is not None else None
        return [(telemetry_sink, [("reattributed", (
            t["door"], from_us(t["pat"]), orjson.dumps(t["sp"]).decode(), t["dpu"],
            from_us(t["start"]), end, end))])]
    net = t["ins"] - t["outs"]
    return [(telemetry_sink, [("dpu", (t["dpu"],)), ("telemetry", (
        t["dpu"], t["ts"], t["dir"], t["eid"], t["ins"], t["outs"], net, t["door"], t["pat"],
        orjson.dumps(t["sp"]).decode(), t["src"][0], t["src"][1], t["kts"]))]),
        (dpu_mirror, [dpu_change(t["dpu"], t["ins"], t["outs"], t["ts"], ver)])]


@app.agent(telemetry, name="sink-telemetry")
async def sink_telemetry(stream):
    """Every events record as received (``dpu_log``) and every counted event with its DPU's
    running counts (``dpu_telemetry``, the Redis mirror), as the DPU stage sends them."""
    await drain("sink-telemetry", stream_batches(stream), [log_sink, telemetry_sink, dpu_mirror],
                lambda message: each_value(message, telemetry_rows, telemetry_sink))


def count_rows(c: dict, ver: tuple[int, int]) -> Rows:
    if c["k"] in ("e", "c"):
        code, partition, offset, seq = c["src"]
        # In time order, the row's reconciled count is its count (``SpaceState.in_time_order``).
        in_order = c.get("in_order", False)
        rows = [("count", (c["space"], c["ts"], c["dpu"], c["d"], c["en"], c["ex"],
                           c["count"], c["counted"], code, partition, offset, seq,
                           c["count"] if in_order else None, c["at"] if in_order else None))]
    else:
        rows = [("space", (c["space"],))]
        if c["k"] == "reset":
            rows.append(("dirty", (c["space"], from_us(c["ts"]))))
    return [(space_count_sink, rows), (space_mirror, [space_change(c["space"], c["count"],
                                                                   c["at"], ver)])]


@app.agent(space_counts, name="sink-space-counts")
async def sink_space_counts(stream):
    await drain("sink-space-counts", stream_batches(stream), [space_count_sink, space_mirror],
                lambda message: each_value(message, count_rows, space_count_sink))


def reject_rows_of(message: Message) -> Rows:
    headers = {k: v.decode(errors="replace") for k, v in (message.headers or [])}
    src_ts = headers.get("source_timestamp_ms")
    return [(rejects_sink, [("reject", (
        headers.get("source_topic", message.topic),
        int(headers.get("source_partition", message.partition)),
        int(headers.get("source_offset", message.offset)),
        printable(headers.get("reason", "rejected")), message.value or b"",
        from_us(clamped(int(src_ts) * 1000)) if src_ts else _ms(message),
        log_key(message.key)))])]


@app.agent(dead_letter, name="sink-rejects")
async def sink_rejects(stream):
    await drain("sink-rejects", stream_batches(stream), [rejects_sink],
                lambda message: add_rows(source_of(message), lambda: reject_rows_of(message),
                                         rejects_sink))


def placement_rows(message: Message, p: Placement) -> Rows:
    at = from_us(p.installed_at)
    rows: list = [("dpu", (p.dpu_id,))]
    if p.doorway_id:
        rows.append(("doorway", (p.doorway_id,)))
    rows.append(("placement", (p.dpu_id, at, p.doorway_id,
                               orjson.dumps(p.to_json()["spaces"]).decode(),
                               message.partition, message.offset)))
    kept = (p.dpu_id, at, message.offset)
    rows.append(("clear", (p.dpu_id, at, *kept)))
    for s in p.spaces:
        rows.append(("space", (s.space_id,)))
        rows.append(("location", (p.dpu_id, s.space_id, p.doorway_id, at, s.direction, *kept)))
    rows.append(("refresh", (p.dpu_id, p.dpu_id)))
    return [(placements_sink, rows)]


@app.agent(app.channel(), name="sink-placements")
async def sink_placements(stream):
    """Its channel carries nothing: its records come from the bulk input."""
    def build(message: Message) -> Rows:
        p = read_placement(message, cfg, now_us())
        return [] if isinstance(p, Reject) else placement_rows(message, p)  # counting files it

    await drain("sink-placements", bulk_batches(placement_records), [placements_sink],
                lambda message: add_rows(source_of(message), lambda: build(message),
                                         placements_sink))


def reset_rows(message: Message) -> Rows:
    r = read_reset(message, cfg, now_us())
    if isinstance(r, Reset):
        rows = [("space", (r.space_id,)), ("reset", (r.space_id, from_us(r.at), r.count)),
                ("dirty", (r.space_id, from_us(r.at)))]
    elif isinstance(r, DailyReset):
        rows = [("space", (r.space_id,)),
                ("daily_off", (r.space_id,)) if r.time is None
                else ("daily", (r.space_id, r.time, r.tz, r.count,
                                from_us(kafka_us(message) if r.since is None else r.since)))]
    else:
        return []  # the counting agent files rejects
    return [(resets_sink, rows)]


@app.agent(app.channel(), name="sink-resets")
async def sink_resets(stream):
    """Its channel carries nothing: its records come from the bulk input."""
    await drain("sink-resets", bulk_batches(reset_records), [resets_sink],
                lambda message: add_rows(source_of(message), lambda: reset_rows(message),
                                         resets_sink))
