"""The Redis mirror: latest count of every space and DPU, and a change channel.

Keys (``<prefix>`` is ``DPU_TOPIC_PREFIX`` + ``dpu:``): hash ``<prefix>spaces`` and hash
``<prefix>dpus`` map an id to a JSON object; every change is published on channel
``<prefix>space-counts`` or ``<prefix>dpu-counts``.

Every value carries a version: where its record lies in the topic the mirror is written from
(offset, then position in the message), or for a rewrite from the tables the end of that
topic's partition. A script writes a value only over an older version, so a worker that writes
late (paused past the session timeout, its Redis commands sent after its successor's) or a
batch delivered again never sets a count back; the versions live in ``<prefix>space-versions``
and ``<prefix>dpu-versions``.
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from pipeline.timeutil import iso

from sinks.base import BatchingSink

Version = tuple[int, int]
"""(offset of the record a value comes from, its position in that message)."""
Change = tuple[str, str, tuple, Version]
"""(``"space"`` or ``"dpu"``, id, its counts as ``space_change`` or ``dpu_change`` give them,
the version); made into JSON only for the newest change of a key (``payload``)."""

WRITE_NEWER = """
for i = 1, #ARGV, 3 do
  local known = redis.call('HGET', KEYS[2], ARGV[i])
  if (not known) or ARGV[i + 1] > known then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('PUBLISH', KEYS[3], ARGV[i + 2])
  end
end
return 0
"""
"""Sets each (id, version, payload) whose version is newer than the one known (fixed-width
decimal strings compare as numbers)."""


LAST_POSITION = 999_999
"""The greatest position in a message a version can name (six digits)."""


def version_text(ver: Version) -> str:
    """A version as the script compares it: fixed-width decimal."""
    return f"{ver[0]:020d}{ver[1]:06d}"


def space_change(space_id: str, count: int, updated_at: int | None, ver: Version) -> Change:
    """What the mirror keeps of a space (its instant in µs)."""
    return "space", space_id, (count, updated_at), ver


def dpu_change(dpu_id: str, ins: int, outs: int, last_event_at: int | None,
               ver: Version) -> Change:
    """What the mirror keeps of a DPU (its instant in µs)."""
    return "dpu", dpu_id, (ins, outs, last_event_at), ver


def payload(kind: str, ident: str, state: tuple) -> bytes:
    """A value as Redis keeps and publishes it: the JSON of the HTTP answers (``GET
    /spaces/{id}/count``, the counts of ``GET /dpus/{id}``), instants as ISO 8601 text.
    Made here, once per key and write, rather than for every change of a batch."""
    if kind == "space":
        count, updated_at = state
        return orjson.dumps({"space_id": ident, "count": count, "updated_at": iso(updated_at)})
    ins, outs, last_event_at = state
    return orjson.dumps({"dpu_id": ident, "ins": ins, "outs": outs, "net": ins - outs,
                         "last_event_at": iso(last_event_at)})


class RedisMirror(BatchingSink[Change]):
    """Keeps only the newest value of each space and DPU until it writes (a batch changes
    the same few thousand keys again and again)."""

    name = "redis"

    def __init__(self, redis_url: str, prefix: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.prefix = prefix
        self._latest: dict[tuple[str, str], tuple[Version, tuple]] = {}
        self._client: aioredis.Redis | None = None
        self._script = None
        self.synced: tuple[str, int] | None = None
        """The Redis server run and group generation this mirror last wrote in full (see
        ``agents/mirror.py``)."""

    def keys(self, kind: str) -> tuple[str, str, str]:
        """The hash of values, the hash of versions and the channel of ``kind``."""
        return f"{self.prefix}{kind}s", f"{self.prefix}{kind}-versions", \
            f"{self.prefix}{kind}-counts"

    def all_keys(self) -> list[str]:
        return [key for kind in ("space", "dpu") for key in self.keys(kind)[:2]]

    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.from_url(self.redis_url, socket_timeout=5,
                                             socket_connect_timeout=5)
            self._script = self._client.register_script(WRITE_NEWER)
        return self._client

    async def server_run_id(self) -> str | None:
        """The id of the running Redis server process (new after each restart); None if down."""
        try:
            return (await self.client().info("server")).get("run_id")
        except Exception:
            await self.reset()
            return None

    def add_item(self, rows: list[Change], source=None, split=None) -> None:
        latest = self._latest
        for kind, ident, state, ver in rows:
            known = latest.get((kind, ident))
            if known is None or ver >= known[0]:
                latest[(kind, ident)] = (ver, state)
        self.stats.pending = len(latest)

    async def flush(self) -> None:
        if not self._latest:
            return
        latest = self._latest
        await self._retrying(self.write, latest)
        self._latest = {}
        self.stats.batches += 1
        self.stats.rows += len(latest)
        self.stats.pending = 0

    async def write(self, latest: dict[tuple[str, str], tuple[Version, tuple]]) -> None:
        client = self.client()
        for kind in ("space", "dpu"):
            args = []
            for (k, ident), (ver, state) in latest.items():
                if k == kind:
                    args += [ident, version_text(ver), payload(kind, ident, state)]
            if args:
                await self._script(keys=list(self.keys(kind)), args=args, client=client)

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                pass
