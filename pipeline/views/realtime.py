"""Realtime answers from the worker's tables, routed to the partition's owner."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from pipeline import health
from pipeline.app import app, cfg
from pipeline.timeutil import iso, now_us
from pipeline.views import cluster, history
from pipeline.views.common import error, table_route
from pipeline.views.sensors import reject_counts
from tables.faust_tables import dpus, items, load, paced, spaces
from tables.space_state import SpaceState


def space_answer(space_id: str, value: dict[str, Any]) -> dict[str, Any]:
    state = SpaceState.from_value(space_id, value)
    return {"space_id": space_id, "count": state.count, "updated_at": iso(state.updated_at)}


def realtime_count(space_id: str) -> int | None:
    value = load(spaces, space_id)
    return None if value is None else SpaceState.from_value(space_id, value).count


async def local_spaces(query) -> dict[str, Any]:
    return {"items": [space_answer(space_id, value)
                      async for space_id, value in paced(items(spaces))]}


@app.page("/spaces")
class SpacesView(View):
    """Every known space with its realtime count, whichever worker is asked."""

    async def get(self, request: Request) -> Response:
        if cluster.is_local(request.query):
            return self.json(await cluster.local_part(spaces, request.query, local_spaces))
        try:
            parts = await cluster.gather(spaces, "/spaces", request.query, local_spaces)
        except cluster.Incomplete as exc:
            return error(self, 503, str(exc))
        listing = sorted((s for part in parts for s in part["items"]),
                         key=lambda s: s["space_id"])
        return self.json({"spaces": listing})


@app.page("/spaces/{space_id}/count")
class SpaceCountView(View):
    """The realtime count (from the owner's table) or, with ``?at=``, count(S, at) (database)."""

    async def get(self, request: Request, space_id: str) -> Response:
        if "at" in request.query:
            return await history.count_view(self, request, space_id)
        return await self.realtime(request, space_id=space_id)

    @table_route(spaces, match_info="space_id")
    async def realtime(self, request: Request, space_id: str) -> Response:
        value = load(spaces, space_id)
        if value is None:
            return error(self, 404, f"unknown space {space_id!r}")
        return self.json(space_answer(space_id, value))


@app.page("/dpus/{dpu_id}")
class DpuView(View):
    @table_route(dpus, match_info="dpu_id")
    async def get(self, request: Request, dpu_id: str) -> Response:
        value = load(dpus, dpu_id)
        if value is None:
            return error(self, 404, f"unknown dpu {dpu_id!r}")
        answer = health.sensor(dpu_id, value, now_us(), cfg.silent_after_s)
        rejects = await reject_counts([dpu_id])
        answer["rejects"] = None if rejects is None else rejects.get(dpu_id, 0)
        return self.json(answer)
