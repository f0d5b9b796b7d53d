"""``GET /events/stream``: the live feed as Server-Sent Events, over every worker.

Each worker's sinks publish the spaces' and DPUs' new counts on Redis channels, and each worker's
health watch the DPUs' changes of status (``agents.health``); the feed forwards what all of them
publish, so any worker serves the whole fleet. Events: ``space`` (the JSON of
``GET /spaces/{id}/count``), ``dpu`` (the counts of ``GET /dpus/{id}``) and ``dpu-status``.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiohttp import web
from faust.web import Request, Response, View

from agents.health import status_channel
from pipeline.app import app, cfg
from pipeline.views.common import error

KEEPALIVE_S = 15.0
"""A comment line at least this often, so that proxies keep an idle stream open."""
POLL_S = 1.0
"""How often the stream checks that the worker is not stopping."""
RETRY_MS = 3000
"""What the stream tells browsers to wait before they reconnect."""


def channels(prefix: str) -> dict[str, str]:
    """Redis channel -> SSE event name."""
    return {f"{prefix}space-counts": "space", f"{prefix}dpu-counts": "dpu",
            status_channel(prefix): "dpu-status"}


def sse(event: str, data: bytes) -> bytes:
    """One Server-Sent Event (``data`` is one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


@app.page("/events/stream")
class LiveFeedView(View):
    async def get(self, request: Request) -> Response:
        names = channels(cfg.redis_prefix)
        wanted = {k for k in request.query.get("events", "").split(",") if k}
        unknown = wanted - set(names.values())
        if unknown:
            return error(self, 400, f"unknown event kind {sorted(unknown)[0][:32]!r}: use "
                                    f"{', '.join(names.values())}")
        client = aioredis.from_url(cfg.redis_url, socket_connect_timeout=5)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(*(c for c, e in names.items() if not wanted or e in wanted))
        except (aioredis.RedisError, OSError):
            await client.aclose()
            return error(self, 503, "the live feed's Redis is not reachable")
        stream = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await stream.prepare(request)
        loop = asyncio.get_running_loop()
        try:
            await stream.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
            quiet_since = loop.time()
            while not app.should_stop:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=POLL_S)
                if message is not None:
                    channel = message["channel"].decode()
                    await stream.write(sse(names[channel], message["data"]))
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= KEEPALIVE_S:
                    await stream.write(b": keepalive\n\n")
                    quiet_since = loop.time()
        except (ConnectionError, aioredis.RedisError, OSError):
            pass  # the browser went away, or Redis did: EventSource reconnects
        finally:
            await pubsub.aclose()
            await client.aclose()
        return stream
