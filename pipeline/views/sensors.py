"""Sensor health over the whole fleet: ``GET /dpus`` (paged), gathered from every worker."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from typing import Any, Mapping

import psycopg
from faust.web import Request, Response, View

from agents.health import watch
from pipeline import health, topics
from pipeline.app import app, cfg
from pipeline.timeutil import now_us
from pipeline.views import cluster
from pipeline.views.common import BadParameter, db_pool, error, ident
from tables.faust_tables import dpus, load, paced

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
REJECT_TOPICS = [cfg.topic(topics.EVENTS), cfg.topic(topics.PLACEMENTS)]
"""A DPU's rejects: the records keyed by its id that these topics refused."""


class SensorQuery:
    """The parameters of ``GET /dpus``: the page (``after``, ``limit``), ``status`` and
    ``silent_after``."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.after = query.get("after", "")
        if self.after:
            ident(self.after, "after")
        try:
            self.limit = int(query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise BadParameter("limit must be an integer") from None
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadParameter(f"limit must be from 1 to {MAX_LIMIT}")
        self.status = query.get("status") or None
        if self.status is not None and self.status not in health.STATUSES:
            raise BadParameter(f"unknown status {self.status[:32]!r}: use one of "
                               f"{', '.join(health.STATUSES)}")
        try:
            self.silent_after_s = (health.parse_duration(query["silent_after"])
                                   if query.get("silent_after") else cfg.silent_after_s)
        except health.BadDuration as exc:
            raise BadParameter(str(exc)) from None


async def local_sensors(query: Mapping[str, str]) -> dict[str, Any]:
    """This worker's DPUs after the cursor, up to the limit, and its status counts."""
    q = SensorQuery(query)
    now = now_us()
    keys = sorted(key.decode() for key in dpus.keys())
    items: list[dict[str, Any]] = []
    more = False
    async for dpu_id in paced(keys[bisect_right(keys, q.after):]):
        value = load(dpus, dpu_id)
        if value is None:
            continue
        if q.status and health.status_of_value(value, now, q.silent_after_s) != q.status:
            continue
        if len(items) == q.limit:
            more = True
            break
        items.append(health.sensor(dpu_id, value, now, q.silent_after_s))
    return {"items": items, "more": more,
            "statuses": watch.counts if watch.scanned_at is not None else None}


async def reject_counts(dpu_ids: list[str]) -> dict[str, int] | None:
    """Rejected records per DPU id (None when the database does not answer)."""
    if not dpu_ids:
        return {}
    try:
        pool = await db_pool()
        async with pool.connection(timeout=5) as conn:
            cur = await conn.execute(
                "SELECT record_key, count(*) FROM dpu_rejects WHERE record_key = ANY(%s) "
                "AND source_topic = ANY(%s) GROUP BY 1", (dpu_ids, REJECT_TOPICS))
            return {key: n for key, n in await cur.fetchall()}
    except (psycopg.Error, OSError, asyncio.TimeoutError):
        return None


@app.page("/dpus")
class SensorsView(View):
    """Every DPU of the fleet with its health, ordered by id, a page at a time."""

    async def get(self, request: Request) -> Response:
        try:
            q = SensorQuery(request.query)
            if cluster.is_local(request.query):
                return self.json(await cluster.local_part(dpus, request.query, local_sensors))
            parts = await cluster.gather(dpus, "/dpus", request.query, local_sensors)
        except BadParameter as exc:
            return error(self, 400, str(exc))
        except cluster.Incomplete as exc:
            return error(self, 503, str(exc))
        merged = sorted((s for part in parts for s in part["items"]), key=lambda s: s["dpu_id"])
        page = merged[:q.limit]
        more = len(merged) > q.limit or any(part.get("more") for part in parts)
        rejects = await reject_counts([s["dpu_id"] for s in page])
        for s in page:
            s["rejects"] = None if rejects is None else rejects.get(s["dpu_id"], 0)
        # Null until every worker has scanned its DPUs once (a few seconds after a start).
        statuses: dict[str, int] | None = dict.fromkeys(health.STATUSES, 0)
        for part in parts:
            if part["partitions"] and part.get("statuses") is None:
                statuses = None
                break
            for name, n in (part.get("statuses") or {}).items():
                statuses[name] = statuses.get(name, 0) + n
        return self.json({"dpus": page, "next": page[-1]["dpu_id"] if more and page else None,
                          "statuses": statuses, "silent_after_s": q.silent_after_s})
