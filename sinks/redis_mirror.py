"""The Redis mirror: latest count of every space and DPU, and a change channel.

Keys (``<prefix>`` is ``DPU_TOPIC_PREFIX`` + ``dpu:``): hash ``<prefix>spaces`` and hash
``<prefix>dpus`` map an id to a JSON object; every change is published on channel
``<prefix>space-counts`` or ``<prefix>dpu-counts``. Writing the latest value is naturally
idempotent: a batch written twice leaves the same hashes.
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from sinks.base import BatchingSink

Change = tuple[str, str, dict]
"""(``"space"`` or ``"dpu"``, id, the JSON-able state)."""


def space_change(space_id: str, count: int, updated_at: int | None) -> Change:
    """What the mirror keeps of a space."""
    return "space", space_id, {"space_id": space_id, "count": count, "updated_at": updated_at}


def dpu_change(dpu_id: str, ins: int, outs: int, last_event_ts: int | None) -> Change:
    """What the mirror keeps of a DPU."""
    return "dpu", dpu_id, {"dpu_id": dpu_id, "ins": ins, "outs": outs, "net": ins - outs,
                           "last_event_ts": last_event_ts}


class RedisMirror(BatchingSink[Change]):
    name = "redis"

    def __init__(self, redis_url: str, prefix: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.prefix = prefix
        self._client: aioredis.Redis | None = None
        self.synced: tuple[str, int] | None = None
        """The Redis server run and group generation this mirror last wrote in full (see
        ``agents/mirror.py``)."""

    def keys(self, kind: str) -> tuple[str, str]:
        return f"{self.prefix}{kind}s", f"{self.prefix}{kind}-counts"

    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.from_url(self.redis_url, socket_timeout=5,
                                             socket_connect_timeout=5)
        return self._client

    async def server_run_id(self) -> str | None:
        """The id of the running Redis server process (new after each restart); None if down."""
        try:
            return (await self.client().info("server")).get("run_id")
        except Exception:
            await self.reset()
            return None

    async def write(self, rows: list[Change]) -> None:
        latest: dict[tuple[str, str], dict] = {}
        for kind, ident, state in rows:
            latest[(kind, ident)] = state  # in partition order: the last one is the newest
        pipe = self.client().pipeline(transaction=False)
        for (kind, ident), state in latest.items():
            hash_key, channel = self.keys(kind)
            payload = orjson.dumps(state)
            pipe.hset(hash_key, ident, payload)
            pipe.publish(channel, payload)
        await pipe.execute()

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                pass
