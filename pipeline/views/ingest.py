"""``POST /events``: events over HTTP, validated like the topic's and published to it."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from faust.web import Request, Response, View

from agents.counting import events_out
from pipeline.app import app, cfg
from pipeline.metrics import metrics
from pipeline.models import DpuEvent, Invalid, event_from_obj
from pipeline.timeutil import now_us
from pipeline.views.common import error

MAX_BODY = 4 * 1024 * 1024
"""Largest request body accepted."""


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


def validate(items: list[Any]) -> tuple[list[DpuEvent], list[dict[str, Any]]]:
    now = now_us()
    good: list[DpuEvent] = []
    bad: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, Invalid):
                raise item
            if not isinstance(item, dict):
                raise Invalid("expected a JSON object")
            good.append(event_from_obj(item, now, cfg.max_future_s))
        except Invalid as exc:
            bad.append({"index": i, "reason": str(exc)})
    return good, bad


async def publish(events: list[DpuEvent]) -> None:
    for e in events:
        await events_out.send(key=e.dpu_id.encode(), value=orjson.dumps(e.to_json()))


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
        good, bad = validate(items)
        await publish(good)
        metrics.inc("http_events_accepted", len(good))
        metrics.inc("http_events_rejected", len(bad))
        return self.json({"accepted": len(good), "rejected": bad}, status=202)
