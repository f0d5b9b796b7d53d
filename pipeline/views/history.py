"""Answers about the past: ``?at=`` counts and series, from PostgreSQL (any worker answers)."""

from __future__ import annotations

import csv
import io

import psycopg
from faust.web import Request, Response, View

from pipeline import history
from pipeline.app import app
from pipeline.timeutil import BadTimestamp, MAX_TEXT, iso
from pipeline.views.common import BadParameter, db_pool, error, ident, instant


async def count_view(view: View, request: Request, space_id: str) -> Response:
    try:
        at = instant(request.query.get("at"), "at")
        value = await count_or_none(ident(space_id, "space_id"), at)
    except BadParameter as exc:
        return error(view, 400, str(exc))
    except psycopg.Error:
        return error(view, 503, "the history database is not reachable")
    if value is None:
        return error(view, 404, f"unknown space {space_id!r}")
    return view.json({"space_id": space_id, "count": value, "at": iso(at)})


async def count_or_none(space_id: str, at: int) -> int | None:
    """count(space_id, at), or None for a space no placement or reset has named."""
    pool = await db_pool()
    async with pool.connection(timeout=5) as conn:
        if not await history.is_known(conn, space_id):
            return None
        return await history.count_at(conn, space_id, at)


@app.page("/spaces/{space_id}/series")
class SeriesView(View):
    async def get(self, request: Request, space_id: str) -> Response:
        q = request.query
        try:
            ident(space_id, "space_id")
            fmt = q.get("format", "json")
            if fmt not in ("json", "csv"):
                raise BadParameter(f"unknown format {fmt[:16]!r}: use json or csv")
            query = history.SeriesQuery(instant(q.get("start"), "start"),
                                        instant(q.get("end"), "end"),
                                        q.get("bucket", "1h"), history.parse_tz(q.get("tz")))
            try:
                query.boundaries()  # validate before touching the database
            except (OverflowError, BadTimestamp):  # a long bucket from late in year 9999
                raise BadParameter(f"the buckets reach past {MAX_TEXT}") from None
            pool = await db_pool()
            async with pool.connection(timeout=5) as conn:
                if not await history.is_known(conn, space_id):
                    return error(self, 404, f"unknown space {space_id!r}")
                points = await history.series(conn, space_id, query)
        except (BadParameter, history.BadQuery) as exc:
            return error(self, 400, str(exc))
        except psycopg.Error:
            return error(self, 503, "the history database is not reachable")
        if fmt == "csv":
            return self.text(series_csv(points), content_type="text/csv", headers={
                "Content-Disposition": f'attachment; filename="{_file_name(space_id)}.csv"'})
        return self.json({"space_id": space_id, "bucket": query.bucket, "series": points})


SERIES_COLUMNS = ("start", "entries", "exits", "count", "min", "max")


def series_csv(points: list[dict]) -> str:
    """A series as CSV, one line per bucket, the JSON answer's fields as columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SERIES_COLUMNS)
    writer.writerows([p[c] for c in SERIES_COLUMNS] for p in points)
    return out.getvalue()


def _file_name(space_id: str) -> str:
    """A download name from a space id: letters, digits, ``-`` and ``_`` only."""
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in space_id)
    return name[:64] or "space"
