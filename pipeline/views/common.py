"""What the views share: JSON errors, parameter parsing, the database pool."""

from __future__ import annotations

import functools

from aiohttp import web
from faust.web import Response, View
from psycopg_pool import AsyncConnectionPool

from pipeline.app import app, cfg
from pipeline.models import Invalid, valid_id
from pipeline.timeutil import BadTimestamp, parse_ts


class BadParameter(ValueError):
    """A request parameter is unusable: answered with 400 and the message."""


def error(view: View, status: int, message: str) -> Response:
    return view.json({"error": message}, status=status)


def instant(value: str | None, name: str) -> int:
    """A query's instant: ISO 8601 (no offset = UTC), 1970-01-01T00:00:00Z to
    9999-12-31T00:00:00Z (``parse_ts``'s bounds: a query may look past the records' 24 h)."""
    if value is None or value == "":
        raise BadParameter(f"missing parameter {name!r}")
    try:
        return parse_ts(value, f"parameter {name!r}")
    except BadTimestamp as exc:
        raise BadParameter(str(exc)) from None


def ident(value: str, name: str) -> str:
    """An id from the path or the query, unchanged, once valid as the records' ids are (else 400).

    No record can name an invalid id, and PostgreSQL refuses NUL in text: checking here keeps
    such a request from reaching the database as an error.
    """
    try:
        valid_id(value, name)
    except Invalid as exc:
        raise BadParameter(str(exc)) from None
    return value


NOT_LOCATED = ("this worker cannot tell yet which worker holds that key (it is starting, or "
               "the group is rebalancing); try again")


def locatable(table, key: str) -> bool:
    """Whether Faust's router can name the worker that holds ``key`` in ``table``."""
    try:
        app.router.key_store(table.name, key)
    except (KeyError, TypeError):  # no assignment yet; the Kafka client lacks the partitions
        return False
    return True


def table_route(table, *, match_info: str | None = None, query_param: str | None = None):
    """``app.table_route`` that answers 503 while the key's worker cannot be named yet.

    Faust's router maps an unknown assignment to its own error, but before the Kafka client
    has the table's partitions it failed with a TypeError inside the client: a count asked of
    a worker that was starting got a 500 and a traceback.
    """
    def decorate(fun):
        routed = app.table_route(table=table, match_info=match_info,
                                 query_param=query_param)(fun)

        @functools.wraps(fun)
        async def get(view: View, request, *args, **kwargs) -> Response:
            key = request.match_info[match_info] if match_info else request.query[query_param]
            if not locatable(table, key):
                return error(view, 503, NOT_LOCATED)
            return await routed(view, request, *args, **kwargs)
        return get
    return decorate


_pool: list[AsyncConnectionPool] = []


async def db_pool() -> AsyncConnectionPool:
    """The worker's PostgreSQL pool for history answers, opened on first use."""
    if not _pool:
        pool = AsyncConnectionPool(cfg.database_url, min_size=1, max_size=8, open=False,
                                   kwargs={"autocommit": True})
        await pool.open(wait=False)
        _pool.append(pool)
    return _pool[0]


@web.middleware
async def json_errors(request: web.Request, handler):
    """Errors aiohttp answers itself (no such route, wrong method) as JSON too, like ours."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)


app.web.web_app.middlewares.append(json_errors)
