"""The rebuild of ``dpu replay``: every table and the attribution history computed in bulk.

A recount sends every record through the agents again, at their pace (41 minutes for a million
events). Here the input topics are read once, in bulk, and the counting logic of the agents
runs over them in memory (``pipeline.recount``), in the order that makes every attribution
final at once: the placements, then the resets, then the events, each event's deltas applied
to its spaces at once. The tables are then written to their changelogs (each key in the
partition its records arrive on, as the agents write it), the attribution history to
``space_count`` with COPY, its rollups and reconciled counts computed once, and the consumer
group's offsets set where the topics ended: workers restore the tables and go on from there,
as after a recount.

The answers are those of a recount: realtime and as-of counts, DPU totals, the rows of every
table (``tests/integration/test_replay.py`` compares them). What depends on arrival order only
may differ: ``count_on_arrival`` (a recount computes it in another order) and the split of an
attribution into a row and its corrections (here every event is attributed once, finally).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import psycopg
from psycopg.copy import QueuedLibpqWriter
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.history import RECONCILED_COLUMNS, SPACE_COUNT_COLUMNS
from pipeline.kafka_auth import client_options
from pipeline.recount import MemoryTables, collector_paused, recount
from pipeline.settings import Settings
from pipeline.timeutil import now_us
from sinks.copy_text import Instants, text
from tables.fenced import EPOCH_HEADER
from tables.store import to_bytes


@dataclass(slots=True)
class Record:
    """One input record as read (the fields ``pipeline.inputs`` reads)."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    """Seconds, as Faust gives it."""
    key: bytes | None
    value: bytes | None


async def read_topic(settings: Settings, name: str) -> tuple[list[Record], dict[int, int]]:
    """Every record of an input topic, partition by partition in offset order, and the offset
    each partition ended at when read."""
    topic = settings.topic(name)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False,
                                max_poll_records=10_000, fetch_max_bytes=64 << 20,
                                max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or ())]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                            or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        by_partition: dict[int, list[Record]] = {tp.partition: [] for tp in tps}
        left = {tp for tp in tps if ends[tp] > 0}
        for tp in tps:
            if tp in left and await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
            for tp, records in fetched.items():
                out = by_partition[tp.partition]
                end = ends[tp]
                for r in records:
                    if r.offset < end:
                        out.append(Record(topic, r.partition, r.offset, r.timestamp / 1000,
                                          r.key, r.value))
                if await consumer.position(tp) >= end:
                    left.discard(tp)
        records = [r for p in sorted(by_partition) for r in by_partition[p]]
        return records, {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


def reconciled(history: list[list], resets: dict[str, list[tuple[int, int]]]
               ) -> list[tuple[list, int]]:
    """Every history row with ``count(S, ts)`` (its ``count_reconciled``), from the rows
    themselves and the resets (``[(at, count)]`` per space): a reset absorbs its instant, and
    rows at one instant share its count.

    In the order of space and instant, the order of ``space_count``'s indexes: COPY then
    writes each index page once (a million rows in 7 s instead of 14 to 17).
    """
    out: list[tuple[list, int]] = []
    by_space: dict[str, list[tuple[int, int, int]]] = {}
    for i, row in enumerate(history):
        rows = by_space.get(row[0])
        if rows is None:
            rows = by_space[row[0]] = []
        rows.append((row[1], i, row[3]))
    for space in sorted(by_space):
        rows = by_space[space]
        rows.sort()  # by instant (then row, which changes no count)
        marks = sorted(resets.get(space, ()))
        j, base_at, total, k, n = 0, None, 0, 0, len(rows)
        while k < n:
            ts = rows[k][0]
            while j < len(marks) and marks[j][0] <= ts:
                base_at, total = marks[j]
                j += 1
            same = k
            while same < n and rows[same][0] == ts:
                same += 1
            if base_at is None or ts > base_at:
                for _, _, delta in rows[k:same]:
                    total += delta
            out += [(history[i], total) for _, i, _ in rows[k:same]]
            k = same
    return out


def space_count_lines(rows: list[tuple[list, int]], at: int) -> Iterator[bytes]:
    """History rows with their ``count_reconciled`` (``reconciled``) and ``reconciled_at``
    (``at``) as COPY text, 10,000 at a time: what ``CopyRow((*SPACE_COUNT_TYPES,
    *RECONCILED_TYPES))`` (the sink's encoder) makes of each, in half the time (one format
    per row, ids escaped once each, one encode per block). ``tests/test_recount.py`` checks
    both agree."""
    instant, texts = Instants(), {}

    def text_of(value: str) -> str:
        found = texts.get(value)
        if found is None:
            found = texts[value] = text(value)
        return found

    at_text = instant(at)
    for start in range(0, len(rows), 10_000):
        yield "".join([
            f"{text_of(space)}\t{instant(ts)}\t{text_of(dpu)}\t{d}\t{en}\t{ex}\t{c}\t"
            f"{'t' if counted else 'f'}\t{text_of(code)}\t{p}\t{o}\t{seq}\t{count}\t"
            f"{at_text}\n"
            for (space, ts, dpu, d, en, ex, c, counted, code, p, o, seq), count
            in rows[start:start + 10_000]]).encode()


async def write_changelogs(settings: Settings, tables: MemoryTables, say) -> int:
    """Every key's value to its table's changelog, in its partition, stamped with an epoch."""
    from pipeline.producer import start_producer

    producer = await start_producer(settings)
    epoch = str(now_us()).encode()
    sent, futures = 0, []
    try:
        builders: dict[tuple[str, int], Any] = {}
        for (table, key), value in tables.values.items():
            if value is None:
                continue  # deleted: a new changelog has nothing to delete
            slot = (topics.changelog(settings, table), tables.partition_of[(table, key)])
            builder = builders.get(slot)
            args = dict(timestamp=None, key=key.encode(), value=to_bytes(table, value),
                        headers=[(EPOCH_HEADER, epoch)])
            if builder is None or builder.append(**args) is None:
                if builder is not None:
                    futures.append(await producer.send_batch(builder, slot[0],
                                                             partition=slot[1]))
                builder = builders[slot] = producer.create_batch()
                if builder.append(**args) is None:
                    raise ValueError(f"a {table} value does not fit in a Kafka batch")
            sent += 1
        for (topic, partition), builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    say(f"wrote {sent} table values to their changelogs")
    return sent


def write_history(url: str, history: list[list], say) -> None:
    """``space_count`` from scratch: the rows with their reconciled counts, then the rollups."""
    with psycopg.connect(url) as conn:
        resets: dict[str, list[tuple[int, int]]] = {}
        for space, at, count in conn.execute(
                "SELECT space_id, (extract(epoch from at) * 1000000)::bigint, count "
                "FROM space_resets"):
            resets.setdefault(space, []).append((at, count))
        with collector_paused():  # millions of new tuples, nothing cyclic
            rows = reconciled(history, resets)
        with conn.cursor() as cur:
            cur.execute("TRUNCATE space_count, space_count_hourly, space_count_daily, "
                        "space_dirty")
            columns = ", ".join((*SPACE_COUNT_COLUMNS, *RECONCILED_COLUMNS))
            # Sent from a thread of psycopg's: the next rows are encoded meanwhile.
            with cur.copy(f"COPY space_count ({columns}) FROM STDIN",
                          writer=QueuedLibpqWriter(cur)) as copy:
                for block in space_count_lines(rows, now_us()):
                    copy.write(block)
            cur.execute("INSERT INTO space_count_hourly (space_id, hour, delta, entries, exits) "
                        "SELECT space_id, date_trunc('hour', event_ts, 'UTC'), sum(delta), "
                        "sum(entries), sum(exits) FROM space_count GROUP BY 1, 2")
            cur.execute("INSERT INTO space_count_daily (space_id, day, delta, entries, exits) "
                        "SELECT space_id, date_trunc('day', hour, 'UTC'), sum(delta), "
                        "sum(entries), sum(exits) FROM space_count_hourly GROUP BY 1, 2")
            cur.execute("INSERT INTO spaces (space_id) SELECT DISTINCT space_id FROM space_count "
                        "ON CONFLICT DO NOTHING")
        conn.commit()
    say(f"wrote {len(history)} attribution rows to space_count, with their rollups")


async def commit_offsets(settings: Settings, ends: dict[str, dict[int, int]]) -> None:
    """The worker group's committed offsets: ``ends`` for the topics given, 0 elsewhere."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=settings.app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = {}
        for name in topics.ALL:
            topic = settings.topic(name)
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or ()
            for p in partitions:
                offsets[TopicPartition(topic, p)] = ends.get(topic, {}).get(p, 0)
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def rebuild(settings: Settings, say: Callable[[str], None] = print) -> dict[str, float]:
    """Read the input topics, recount in memory, write the changelogs, the history and the
    offsets. The caller has checked that no worker runs and removed the derived topics, the
    changelogs and the local stores (``pipeline.replay``)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    read = {name: await read_topic(settings, name)
            for name in (topics.PLACEMENTS, topics.RESETS, topics.EVENTS)}
    timings["read_s"] = time.perf_counter() - t
    say(f"read {sum(len(r) for r, _ in read.values())} input records")
    t = time.perf_counter()
    result = recount(read[topics.PLACEMENTS][0], read[topics.RESETS][0],
                     read[topics.EVENTS][0], settings)
    timings["count_s"] = time.perf_counter() - t
    say(f"counted them in {timings['count_s']:.1f} s ({result.rejected} refused, as before)")
    t = time.perf_counter()
    await write_changelogs(settings, result.tables, say)
    timings["changelogs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    await asyncio.to_thread(write_history, settings.database_url, result.history, say)
    timings["history_s"] = time.perf_counter() - t
    await commit_offsets(settings, {settings.topic(name): ends
                                    for name, (_, ends) in read.items()})
    say("set the worker group's offsets where the input topics ended")
    return timings
