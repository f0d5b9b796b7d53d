"""Realtime answers from the worker's tables, routed to the partition's owner."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from pipeline.app import app
from pipeline.timeutil import iso
from pipeline.views import history
from pipeline.views.common import error
from tables.dpu_state import DpuState
from tables.faust_tables import dpus, items, load, spaces
from tables.space_state import SpaceState


def space_answer(space_id: str, value: dict[str, Any]) -> dict[str, Any]:
    state = SpaceState.from_value(space_id, value)
    return {"space_id": space_id, "count": state.count, "updated_at": iso(state.updated_at)}


def realtime_count(space_id: str) -> int | None:
    value = load(spaces, space_id)
    return None if value is None else SpaceState.from_value(space_id, value).count


@app.page("/spaces")
class SpacesView(View):
    async def get(self, request: Request) -> Response:
        listing = [space_answer(k, v) for k, v in items(spaces)]
        listing.sort(key=lambda s: s["space_id"])
        return self.json({"spaces": listing})


@app.page("/spaces/{space_id}/count")
class SpaceCountView(View):
    """The realtime count (from the owner's table) or, with ``?at=``, count(S, at) (database)."""

    async def get(self, request: Request, space_id: str) -> Response:
        if "at" in request.query:
            return await history.count_view(self, request, space_id)
        return await self.realtime(request, space_id=space_id)

    @app.table_route(table=spaces, match_info="space_id")
    async def realtime(self, request: Request, space_id: str) -> Response:
        value = load(spaces, space_id)
        if value is None:
            return error(self, 404, f"unknown space {space_id!r}")
        return self.json(space_answer(space_id, value))


@app.page("/dpus/{dpu_id}")
class DpuView(View):
    @app.table_route(table=dpus, match_info="dpu_id")
    async def get(self, request: Request, dpu_id: str) -> Response:
        value = load(dpus, dpu_id)
        if value is None:
            return error(self, 404, f"unknown dpu {dpu_id!r}")
        state = DpuState.from_value(dpu_id, value)
        current = state.placements.current
        return self.json({
            "dpu_id": dpu_id, "ins": state.ins, "outs": state.outs, "net": state.net,
            "last_event_at": iso(state.last_event_at),
            "placement": None if current is None else current.to_json(),
        })
