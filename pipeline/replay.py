"""``dpu replay``: rebuild all state by recounting the input topics from the start.

With no worker of the deployment running, and everything produced so far sunk: drop the derived
topics (space deltas, outputs, dead letters), the tables' changelogs and the local table stores,
empty the attribution history, and rewind the consumer group to offset 0 everywhere. The next ``dpu worker`` then recounts every input record
from the first offset. Sinks upsert by source: counts, as-of answers and every raw table end as
they were; nothing is lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.progress import backlog
from pipeline.kafka_auth import client_options
from pipeline.settings import Settings
from pipeline.topics import admin_client, ensure_topics

DERIVED = (topics.SPACE_DELTAS, topics.TELEMETRY, topics.SPACE_COUNTS, topics.DEAD_LETTER)
TABLES = ("dpus", "dpu-days", "event-ids", "spaces", "space-days", "daily-resets")


class ReplayRefused(RuntimeError):
    """Replaying now would lose data or race a running worker."""


async def replay(settings: Settings, say=print) -> list[str]:
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
        existing = set(await admin.list_topics())
        doomed = [settings.topic(n) for n in DERIVED] + \
            [f"{settings.app_id}-{t}-changelog" for t in TABLES]
        doomed = [t for t in doomed if t in existing]
        say(f"deleting {len(doomed)} derived topics and changelogs")
        if doomed:
            await admin.delete_topics(doomed)
        deadline = time.monotonic() + 60
        while set(doomed) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise ReplayRefused("the broker did not delete the topics within 60 s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    say("clearing the attribution history (space_count and its rollups), rebuilt by the recount")
    clear_history(settings.database_url)
    store = settings.state_dir / "worker"
    if store.exists():
        say(f"removing local table stores under {store}")
        shutil.rmtree(store)
    # Recreate the derived topics now: a worker must find them with the configured partitions.
    for attempt in range(40):
        try:
            await ensure_topics(settings)
            break
        except Exception:
            if attempt == 39:
                raise
            await asyncio.sleep(0.5)
    say("rewinding the consumer group to the first record of every topic")
    await rewind_group(settings)
    say("done: start `dpu worker` to recount from the first record")
    return doomed


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
