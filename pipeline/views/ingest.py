"""``POST /events``: events over HTTP, validated like the topic's and published to it.

A 202 means Kafka acknowledged every accepted event (``acks=all``): Faust's ``Topic.send`` only
hands a record to the producer, so :func:`deliver` awaits each delivery as well, within
``ACK_TIMEOUT_S``. Past it the answer is a 503 that lists the items a client must send again.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import orjson
from faust.web import Request, Response, View

from agents.counting import events_out, placements_out, resets_out
from pipeline.app import app, cfg
from pipeline.metrics import metrics
from pipeline.models import DailyReset, DpuEvent, Invalid, Placement, Reset, event_from_obj, \
    placement_from_obj, reset_from_obj
from pipeline.timeutil import now_us
from pipeline.views.common import BadParameter, error, ident

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
"""Largest request body accepted."""
ACK_TIMEOUT_S = 10.0
"""How long a request waits for Kafka to acknowledge its events before answering 503."""

Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
"""Hands one record (key, value) to the producer; what it returns completes on Kafka's ack."""


def authorized(request: Request) -> bool:
    """Whether the request carries the configured bearer token (always, when none is set)."""
    if not cfg.ingest_token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), cfg.ingest_token)


def parse_body(body: bytes) -> list[Any]:
    """A JSON object, a JSON array, or NDJSON, as a list of items (each may be invalid)."""
    text = body.strip()
    if not text:
        raise Invalid("empty body")
    try:
        value = orjson.loads(text)
        return value if isinstance(value, list) else [value]
    except orjson.JSONDecodeError:
        items: list[Any] = []
        for line in text.splitlines():
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    items.append(Invalid("not valid JSON"))
        return items


@dataclass
class Validated:
    """The items of one request, sorted into records to publish and refusals."""

    good: list[tuple[int, Any]] = field(default_factory=list)
    """(index in the request, parsed record) of each valid item, in request order."""
    bad: list[dict[str, Any]] = field(default_factory=list)
    """``{"index", "reason"}`` of each invalid item."""


Parse = Callable[[dict[str, Any], int, float], Any]
"""Builds a record from a JSON object as the workers check the topic's records (``*_from_obj``),
or raises :class:`Invalid`."""


def validate(items: list[Any], now: int | None = None, max_future_s: float | None = None,
             parse: Parse = event_from_obj) -> Validated:
    """Each item checked as the workers check a record of its topic (events by default)."""
    now = now_us() if now is None else now
    max_future_s = cfg.max_future_s if max_future_s is None else max_future_s
    out = Validated()
    for i, item in enumerate(items):
        try:
            if isinstance(item, Invalid):
                raise item
            if not isinstance(item, dict):
                raise Invalid("expected a JSON object")
            out.good.append((i, parse(item, now, max_future_s)))
        except Invalid as exc:
            out.bad.append({"index": i, "reason": str(exc)})
    return out


def record(parsed: DpuEvent | Placement | Reset | DailyReset) -> tuple[bytes, bytes]:
    """(key, value) of a record on its topic: keyed by ``dpu_id`` or ``space_id``, as every
    producer keys them."""
    key = parsed.space_id if isinstance(parsed, (Reset, DailyReset)) else parsed.dpu_id
    return key.encode(), orjson.dumps(parsed.to_json())


async def deliver(records: Sequence[tuple[bytes, bytes]], send: Send,
                  timeout_s: float = ACK_TIMEOUT_S) -> list[int]:
    """Send ``records`` in order; the positions of those Kafka did not acknowledge in time.

    A record counts as acknowledged only once its delivery completed without error within
    ``timeout_s`` of the call; anything else (a send refused, a delivery failed, no answer in
    time) leaves it unacknowledged. Never raises for a producer's failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    deliveries: list[asyncio.Future] = []

    async def hand_over() -> None:
        for key, value in records:
            deliveries.append(asyncio.ensure_future(await send(key, value)))

    try:
        # Handing over waits too when the producer's buffer is full: the same deadline holds.
        await asyncio.wait_for(hand_over(), timeout_s)
    except asyncio.TimeoutError:
        pass
    except Exception:  # e.g. ProducerSendError: the records not handed over are unacknowledged
        log.warning("POST /events: the producer refused a record", exc_info=True)
    pending = [d for d in deliveries if not d.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
    for d in deliveries:
        # Read late failures too, so that asyncio does not log them as never retrieved.
        d.add_done_callback(lambda f: f.cancelled() or f.exception())
    acked = [d.done() and not d.cancelled() and d.exception() is None for d in deliveries]
    return [i for i in range(len(records)) if i >= len(acked) or not acked[i]]


async def ingest(items: list[Any], send: Send, *, now: int | None = None,
                 timeout_s: float = ACK_TIMEOUT_S, parse: Parse = event_from_obj,
                 what: str = "events") -> tuple[int, dict[str, Any]]:
    """(status, body) of ``POST /events`` (or of another topic's POST, by ``parse``) for the
    request's ``items``.

    202 ``{"accepted", "rejected"}`` once every valid item is acknowledged; else 503 with the
    indexes of the valid items not acknowledged, which a client sends again (with an
    ``event_id`` a resent event counts once, should the first copy arrive after all).
    """
    checked = validate(items, now, parse=parse)
    unacked = await deliver([record(e) for _, e in checked.good], send, timeout_s)
    accepted = len(checked.good) - len(unacked)
    metrics.http_accepted.labels(what).inc(accepted)
    metrics.http_rejected.labels(what).inc(len(checked.bad))
    body: dict[str, Any] = {"accepted": accepted, "rejected": checked.bad}
    if not unacked:
        return 202, body
    metrics.http_unacknowledged.labels(what).inc(len(unacked))
    body["unacknowledged"] = [checked.good[j][0] for j in unacked]
    body["error"] = (f"Kafka did not acknowledge {len(unacked)} of {len(checked.good)} valid "
                     f"{what.removesuffix('s')}(s) within {timeout_s:g} s; send the "
                     "unacknowledged ones again")
    return 503, body


def sender(topic) -> Send:
    """The worker's producer for ``topic``: ``Topic.send`` returns the delivery future without
    awaiting it."""
    async def send(key: bytes, value: bytes) -> Awaitable[Any]:
        # force: never attach to a current event (none in a web request, but attached sends
        # would only go out with that event's acknowledgement).
        return await topic.send(key=key, value=value, force=True)
    return send


faust_send = sender(events_out)


async def posted_items(view: View, request: Request) -> tuple[list[Any], Response | None]:
    """The items of an authorized POST body; or no items and the 401/400 answer to send."""
    if not authorized(request):
        return [], error(view, 401, "a valid bearer token is required")
    body = await request.read()
    if len(body) > MAX_BODY:
        return [], error(view, 400, f"body larger than {MAX_BODY} bytes")
    try:
        return parse_body(body), None
    except Invalid as exc:
        return [], error(view, 400, str(exc))


@app.page("/events")
class EventsView(View):
    async def post(self, request: Request) -> Response:
        items, refusal = await posted_items(self, request)
        if refusal is not None:
            return refusal
        status, body = await ingest(items, faust_send)
        return self.json(body, status=status)


@app.page("/placements")
class PlacementsView(View):
    """Placements (a DPU hung over a doorway from an instant on), as the placements topic takes
    them: a JSON object, array or NDJSON."""

    async def post(self, request: Request) -> Response:
        items, refusal = await posted_items(self, request)
        if refusal is not None:
            return refusal
        status, body = await ingest(items, sender(placements_out), parse=placement_from_obj,
                                    what="placements")
        return self.json(body, status=status)


@app.page("/spaces/{space_id}/resets")
class ResetsView(View):
    """Resets of one space as the resets topic takes them, the space named by the path:
    ``{"at", "count"}``, or ``{"daily_reset": {"time", "tz", "count", "since"}}`` (``null``
    turns it off)."""

    async def post(self, request: Request, space_id: str) -> Response:
        items, refusal = await posted_items(self, request)
        if refusal is not None:
            return refusal
        try:
            ident(space_id, "space_id")
        except BadParameter as exc:
            return error(self, 400, str(exc))
        for i, item in enumerate(items):
            if isinstance(item, dict):
                if item.setdefault("space_id", space_id) != space_id:
                    items[i] = Invalid(f"space_id {str(item['space_id'])[:64]!r} is not the "
                                       f"path's {space_id!r}")
        status, body = await ingest(items, sender(resets_out), parse=reset_from_obj,
                                    what="resets")
        return self.json(body, status=status)
