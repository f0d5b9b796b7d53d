"""The HTTP view served by each worker (SPEC §5).

Realtime answers come from the ``spaces`` table; a request for a space whose partition another
worker owns is routed to that worker by Faust's table router.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from agents.sinks import SINKS
from pipeline import topics
from pipeline.app import app, cfg
from pipeline.metrics import metrics
from pipeline.timeutil import iso
from tables.faust_tables import items, load, spaces
from tables.space_state import SpaceState


def error(web: View, status: int, message: str) -> Response:
    return web.json({"error": message}, status=status)


def space_answer(space_id: str, value: dict[str, Any]) -> dict[str, Any]:
    state = SpaceState.from_value(space_id, value)
    return {"space_id": space_id, "count": state.count, "updated_at": iso(state.updated_at)}


@app.page("/spaces")
class SpacesView(View):
    async def get(self, request: Request) -> Response:
        listing = [space_answer(k, v) for k, v in items(spaces)]
        listing.sort(key=lambda s: s["space_id"])
        return self.json({"spaces": listing})


@app.page("/spaces/{space_id}/count")
class SpaceCountView(View):
    @app.table_route(table=spaces, match_info="space_id")
    async def get(self, request: Request, space_id: str) -> Response:
        value = load(spaces, space_id)
        if value is None:
            return error(self, 404, f"unknown space {space_id!r}")
        return self.json(space_answer(space_id, value))


PIPELINE_TOPICS = frozenset(cfg.topic(name) for name in topics.ALL)


def consumer_lag() -> dict[str, int]:
    """Records not yet processed, per pipeline topic, over the partitions this worker owns."""
    consumer = app.consumer
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        if tp.topic not in PIPELINE_TOPICS:
            continue  # table changelogs are read for recovery, never committed
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        position = consumer._committed_offset.get(tp)  # next offset to commit
        done = position if position is not None else 0
        if high is not None:
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - done)
    return lag


@app.page("/status")
class StatusView(View):
    async def get(self, request: Request) -> Response:
        lag = consumer_lag()
        sinks = {s.name if s.name != "redis" else f"redis-{i}": {
            "pending": s.stats.pending, "batches": s.stats.batches, "rows": s.stats.rows,
            "failures": s.stats.failures, "last_error": s.stats.last_error}
            for i, s in enumerate(SINKS)}
        backlog = sum(s.stats.pending for s in SINKS)
        return self.json({"caught_up": sum(lag.values()) == 0 and backlog == 0,
                          "assigned": len(app.consumer.assignment()),
                          "consumer_lag": lag, "sink_backlog": backlog, "sinks": sinks})


@app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        gauges = {"consumer_lag": float(sum(consumer_lag().values())),
                  "sink_backlog": float(sum(s.stats.pending for s in SINKS)),
                  "sink_batches": float(sum(s.stats.batches for s in SINKS)),
                  "sink_failures": float(sum(s.stats.failures for s in SINKS))}
        return self.text(metrics.render(gauges), content_type="text/plain; version=0.0.4")
