"""``dpu replay``: rebuild all state from the input topics.

With no worker of the deployment running, and everything produced so far sunk: drop the derived
topics (space deltas, outputs, dead letters), the tables' changelogs and the local table stores,
then rebuild the tables and the attribution history in bulk (``pipeline.rebuild``) and set the
consumer group's offsets where the input topics end: the next ``dpu worker`` restores the tables
and goes on from there. ``--from-log`` first publishes the events topic again from ``dpu_log``;
the events then have new offsets, so the workers recount every record from the first offset
instead, writing ``dpu_log`` and ``dpu_telemetry`` again. Sinks upsert by source: counts, as-of
answers and every raw table end as they were; nothing is lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.producer import start_producer
from pipeline.progress import backlog
from pipeline.rebuild import rebuild
from pipeline.kafka_auth import client_options
from pipeline.settings import Settings
from pipeline.topics import admin_client, ensure_topics

DERIVED = (topics.SPACE_DELTAS, topics.TELEMETRY, topics.SPACE_COUNTS, topics.DEAD_LETTER)


class ReplayRefused(RuntimeError):
    """Replaying now would lose data or race a running worker."""


async def replay(settings: Settings, say=print, from_log: bool = False) -> dict[str, float]:
    """Returns the seconds each phase of the rebuild took (none with ``from_log``)."""
    admin = await admin_client(settings)
    try:
        responses = await admin.describe_consumer_groups([settings.app_id])
        # Each group entry: (error_code, group_id, state, protocol_type, protocol, members, ...)
        members = sum(len(g[5]) for r in responses for g in r.groups if g[1] == settings.app_id)
        if members:
            raise ReplayRefused(f"{members} worker(s) of {settings.app_id} are running: "
                                "stop them first")
        left = await backlog(settings)
        derived = {settings.topic(n) for n in DERIVED}
        if any(topic in derived for topic in left):
            raise ReplayRefused(f"records not yet counted or sunk: {left}; start a worker and "
                                "`dpu wait` first")
        for name in (topics.PLACEMENTS, topics.RESETS):
            lost = await records_lost(settings, name)
            if lost:
                raise ReplayRefused(
                    f"the {settings.topic(name)} topic no longer holds its first records "
                    f"({lost}): a recount without them would not give the same counts")
        missing = await events_missing_from_topic(settings)
        if missing and not from_log:
            raise ReplayRefused(f"the events topic no longer holds {missing} records that dpu_log "
                                "has: run `dpu replay --from-log` to publish them again")
        clear_mirror(settings, say)
        if from_log:
            await republish_from_log(settings, say)
        existing = set(await admin.list_topics())
        doomed = [settings.topic(n) for n in DERIVED] + \
            [topics.changelog(settings, t) for t in topics.TABLES]
        doomed = [t for t in doomed if t in existing]
        say(f"deleting {len(doomed)} derived topics and changelogs")
        await delete_topics(admin, doomed)
    finally:
        await admin.close()
    store = settings.store_dir
    if store.exists():
        say(f"removing local table stores under {store}")
        shutil.rmtree(store)
    # Recreate the derived topics now: a worker must find them with the configured partitions.
    await recreate_topics(settings)
    if from_log:
        # The events got new offsets: dpu_log and dpu_telemetry are written again by a recount.
        say("clearing the attribution history (space_count and its rollups), rebuilt by the "
            "recount")
        clear_history(settings.database_url)
        say("rewinding the consumer group to the first record of every topic")
        await rewind_group(settings)
        say("done: start `dpu worker` to recount from the first record")
    else:
        timings = await rebuild(settings, say)
        say("done: start `dpu worker`: it restores the tables and goes on from there")
        return timings
    return {}


def clear_mirror(settings: Settings, say) -> None:
    """Empty the Redis mirror: its versions are offsets of the topics the replay recreates
    (``sinks.redis_mirror``), and the workers write it again from the rebuilt tables."""
    import redis

    from sinks.redis_mirror import RedisMirror

    keys = RedisMirror(settings.redis_url, settings.redis_prefix).all_keys()
    try:
        with redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                  socket_connect_timeout=5) as client:
            client.delete(*keys)
    except redis.RedisError as exc:
        raise ReplayRefused(f"Redis is not reachable at {settings.redis_url} ({exc}): the "
                            "replay empties its mirror; start it (`dpu dev up`)") from None
    say("emptied the Redis mirror (the workers write it again)")


async def delete_topics(admin, names: list[str]) -> None:
    """Delete topics and wait until the broker no longer lists them."""
    if not names:
        return
    await admin.delete_topics(names)
    deadline = time.monotonic() + 60
    while set(names) & set(await admin.list_topics()):
        if time.monotonic() > deadline:
            raise ReplayRefused("the broker did not delete the topics within 60 s")
        await asyncio.sleep(0.5)


async def delete_topics_named_after(settings: Settings, run: str) -> None:
    """Delete every topic whose name holds `run` (a run's own topics and its workers' changelogs)."""
    admin = await admin_client(settings)
    try:
        await delete_topics(admin, [t for t in await admin.list_topics() if run in t])
    finally:
        await admin.close()


async def recreate_topics(settings: Settings) -> None:
    """Create the missing pipeline topics and changelogs, retrying while the broker finishes
    deletions."""
    for attempt in range(40):
        try:
            await ensure_topics(settings, changelogs=True)
            return
        except Exception:
            if attempt == 39:
                raise
            await asyncio.sleep(0.5)


async def rewind_group(settings: Settings) -> None:
    """Commit offset 0 on every partition of every pipeline topic for the worker group."""
    admin = await admin_client(settings)
    try:
        described = await admin.describe_topics([settings.topic(n) for n in topics.ALL])
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described
           for p in t.get("partitions", ())]
    consumer = AIOKafkaConsumer(**client_options(settings),
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


def clear_history(url: str) -> None:
    """Empty the tables the recount rebuilds from scratch.

    Attribution rows are keyed by the record that caused them: an event counted before its
    placement arrived has a row and a correction, one counted after has a single row. A recount
    may interleave differently, so its rows replace the old ones rather than join them.
    Raw tables (``dpu_log``, rejects, placements, resets) and ``dpu_telemetry`` are upserted by
    source and stay.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE space_count, space_count_hourly, space_count_daily, space_dirty")


async def records_lost(settings: Settings, name: str) -> str:
    """Which partitions of a topic no longer start at offset 0 (retention or deleted
    records took their first records), as text; empty when none did."""
    first, _ = await _offsets(settings, name)
    return ", ".join(f"partition {p} starts at offset {o}" for p, o in sorted(first.items()) if o)


async def _offsets(settings: Settings, name: str = topics.EVENTS
                   ) -> tuple[dict[int, int], dict[int, int]]:
    """First and next offset of each partition of a topic (the events topic by default)."""
    topic = settings.topic(name)
    consumer = AIOKafkaConsumer(**client_options(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        first = await consumer.beginning_offsets(tps) if tps else {}
        end = await consumer.end_offsets(tps) if tps else {}
        return ({tp.partition: o for tp, o in first.items()},
                {tp.partition: o for tp, o in end.items()})
    finally:
        await consumer.stop()


async def events_missing_from_topic(settings: Settings) -> int:
    """How many ``dpu_log`` records lie outside what the events topic still holds."""
    first, end = await _offsets(settings)
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute('SELECT "partition", "offset" FROM dpu_log WHERE topic = %s',
                            (settings.topic(topics.EVENTS),)).fetchall()
    return sum(1 for p, o in rows if p not in first or o < first[p] or o >= end[p])


async def republish_from_log(settings: Settings, say=print) -> int:
    """Publish every event record of ``dpu_log`` again, to a new events topic.

    Records go to their old partition, in their old order, with their key and timestamp. The rows
    derived from the old offsets (``dpu_log``, ``dpu_telemetry``, rejected events) are deleted in
    the same transaction that read them, committed only once every record is acknowledged: a
    failure leaves ``dpu_log`` whole, and running this again starts over.
    """
    topic = settings.topic(topics.EVENTS)
    admin = await admin_client(settings)
    try:
        if topic in set(await admin.list_topics()):
            say(f"deleting {topic} to publish it again from dpu_log")
            await delete_topics(admin, [topic])
    finally:
        await admin.close()
    await recreate_topics(settings)
    producer = await start_producer(settings)
    sent = 0
    try:
        with psycopg.connect(settings.database_url) as conn:
            with conn.cursor(name="dpu_replay_log") as cur:
                cur.itersize = 5000
                cur.execute('SELECT "partition", dpu_id, raw, kafka_ts FROM dpu_log '
                            'WHERE topic = %s ORDER BY "partition", "offset"', (topic,))
                pending = []
                for partition, key, raw, kafka_ts in cur:
                    pending.append(await producer.send(
                        topic, bytes(raw), key=key.encode() if key is not None else None,
                        partition=partition, timestamp_ms=int(kafka_ts.timestamp() * 1000)))
                    if len(pending) >= 5000:
                        await asyncio.gather(*pending)
                        sent += len(pending)
                        pending.clear()
                        say(f"published {sent} records again")
                await asyncio.gather(*pending)
                sent += len(pending)
            conn.execute("DELETE FROM dpu_log WHERE topic = %s", (topic,))
            conn.execute("DELETE FROM dpu_rejects WHERE source_topic = %s", (topic,))
            conn.execute("TRUNCATE dpu_telemetry")
    finally:
        await producer.stop()
    say(f"published {sent} event records again from dpu_log")
    return sent
