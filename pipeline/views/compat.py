"""The original prototype's endpoints, kept so its clients keep working.

``GET /?space=A`` and ``GET /count?space=A[&timestamp=TS]`` answer ``{"status": "OK", "count": N}``
(``null`` for an unknown space); ``POST /send`` takes one event.
"""

from __future__ import annotations

import psycopg
from faust.web import Request, Response, View

from pipeline.app import app
from pipeline.views.common import BadParameter, error, ident, instant, table_route
from pipeline.views.dashboard import dashboard
from pipeline.views.history import count_or_none
from pipeline.views.ingest import deliver, faust_send, posted_items, record, validate
from pipeline.views.realtime import realtime_count
from tables.faust_tables import spaces


def _space(request: Request) -> str:
    space = request.query.get("space", "")
    if not space:
        raise BadParameter("missing parameter 'space'")
    return ident(space, "space")


@app.page("/")
class RealtimeCompat(View):
    """``/`` without parameters is the dashboard; with ``?space=`` the prototype's count."""

    serves_dashboard = True

    async def get(self, request: Request) -> Response:
        if self.serves_dashboard and not request.query:
            return dashboard(self)
        try:
            _space(request)
        except BadParameter as exc:
            return error(self, 400, str(exc))
        if "timestamp" in request.query:
            return await self.as_of(request)
        return await self.routed(request)

    @table_route(spaces, query_param="space")
    async def routed(self, request: Request) -> Response:
        return self.json({"status": "OK", "count": realtime_count(request.query["space"])})

    async def as_of(self, request: Request) -> Response:
        try:
            at = instant(request.query.get("timestamp"), "timestamp")
            count = await count_or_none(_space(request), at)
        except BadParameter as exc:
            return error(self, 400, str(exc))
        except psycopg.Error:
            return error(self, 503, "the history database is not reachable")
        return self.json({"status": "OK", "count": count})


@app.page("/count")
class CountCompat(RealtimeCompat):
    """``/count`` answers exactly as ``/?space=`` does."""

    serves_dashboard = False


@app.page("/send")
class SendCompat(View):
    async def post(self, request: Request) -> Response:
        items, refusal = await posted_items(self, request)
        if refusal is not None:
            return refusal
        checked = validate(items[:1])
        if checked.bad or len(items) != 1:
            reason = checked.bad[0]["reason"] if checked.bad else "send takes exactly one event"
            return self.json({"status": "error", "error": reason}, status=400)
        (_, event), = checked.good
        if await deliver([record(event)], faust_send):
            return self.json({"status": "error", "error": "Kafka did not acknowledge the event "
                              "in time; send it again"}, status=503)
        return self.json({"status": "OK"}, status=202)
