"""The Redis mirror takes a value only over an older one (``sinks.redis_mirror``)."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import redis

from sinks.redis_mirror import RedisMirror, space_change


def test_a_late_write_never_sets_a_count_back(base_settings):
    """A worker paused past the session timeout may send its Redis commands after its
    successor's, and a batch may be delivered again: neither overwrites a newer count."""
    mirror = RedisMirror(base_settings.redis_url, f"t{uuid.uuid4().hex[:8]}-dpu:")
    values, _, channel = mirror.keys("space")

    async def write(*changes) -> None:
        for change in changes:
            mirror.add(change)
        await mirror.flush()

    async def scenario() -> None:
        try:
            await write(space_change("A", 7, 1, (12, 3)))
            await write(space_change("A", 5, 1, (12, 2)),  # older, and in the past
                        space_change("A", 6, 1, (9, 0)))
            await write(space_change("A", 8, 2, (13, 0)),
                        space_change("B", 1, 2, (0, 0)))
        finally:
            await mirror.close()

    client = redis.Redis.from_url(base_settings.redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)
    asyncio.run(scenario())
    stored = {k.decode(): orjson.loads(v)["count"] for k, v in client.hgetall(values).items()}
    assert stored == {"A": 8, "B": 1}
    published = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            published.append(orjson.loads(message["data"])["count"])
    assert sorted(published) == [1, 7, 8], "only the changes written are published"
    client.delete(*mirror.all_keys())
