"""``GET /openapi.json``: an OpenAPI 3.1 document of every route of the HTTP view (SPEC §5).

Written by hand next to the routes it describes; ``tests/test_openapi.py`` checks that every
route the worker registers is described here, and nothing else.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from faust.web import Request, Response, View

from pipeline.app import app


def _version() -> str:
    try:
        return version("dpu-pipeline")
    except PackageNotFoundError:
        return "0"


def _param(name: str, where: str, description: str, required: bool = False,
           schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema or {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict, *, params: list | None = None, body: dict | None = None,
        errors: tuple[int, ...] = (400,), secured: bool = False, status: str = "200") -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {status: ok}}
    for code in errors:
        op["responses"][str(code)] = {"$ref": f"#/components/responses/E{code}"}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body},
            "application/x-ndjson": {"schema": {"type": "string"}}}}
    if secured:
        op["security"] = [{"bearer": []}]
    return op


INSTANT = {"type": "string", "format": "date-time",
           "description": "ISO 8601; without an offset it is UTC"}
SPACE = _param("space_id", "path", "Space id.")
DPU = _param("dpu_id", "path", "DPU id.")
ACCEPTED = _json(_ref("Accepted"), "Every valid item acknowledged by Kafka (acks=all).")
WRITE_ERRORS = (400, 401, 503)


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    counts = {"type": "object", "properties": {"status": {"const": "OK"},
                                               "count": {"type": ["integer", "null"]}}}
    compat = [_param("space", "query", "Space id.", required=True),
              _param("timestamp", "query", "As-of instant (count(S, T)).", schema=INSTANT)]
    paths = {
        "/": {"get": _op("The dashboard (HTML); with ?space= the prototype's realtime count, "
                         "with &timestamp= its count as of that instant",
                         {"description": "text/html, or the prototype's JSON with ?space=",
                          "content": {"text/html": {}, "application/json": {"schema": counts}}},
                         params=[_param("space", "query", "Space id (prototype mode)."),
                                 compat[1]])},
        "/dashboard": {"get": _op("The dashboard (HTML)", {"description": "text/html",
                                                           "content": {"text/html": {}}},
                                  errors=())},
        "/count": {"get": _op("The prototype's count endpoint", _json(counts, "count or null"),
                              params=compat)},
        "/send": {"post": _op("The prototype's ingestion of one event",
                              {"description": "accepted"}, body=_ref("Event"),
                              errors=WRITE_ERRORS, secured=True, status="202")},
        "/spaces": {"get": _op("Every known space with its realtime count, over all workers",
                               _json({"type": "object", "properties": {"spaces": {
                                   "type": "array", "items": _ref("SpaceCount")}}}, "spaces"),
                               errors=(503,))},
        "/spaces/{space_id}/count": {"get": _op(
            "Realtime count, or with ?at= count(S, at)", _json(_ref("SpaceCount"), "count"),
            params=[SPACE, _param("at", "query", "As-of instant.", schema=INSTANT)],
            errors=(400, 404, 503))},
        "/spaces/{space_id}/series": {"get": _op(
            "Per bucket: start, entries, exits, count at its end, min and max",
            {"description": "the series", "content": {
                "application/json": {"schema": _ref("Series")},
                "text/csv": {"schema": {"type": "string"}}}},
            params=[SPACE, _param("start", "query", "First instant.", True, INSTANT),
                    _param("end", "query", "Last instant.", True, INSTANT),
                    _param("bucket", "query", "Bucket size: a number and m, h or d (default "
                           "1h)."),
                    _param("tz", "query", "IANA zone the buckets are aligned to."),
                    _param("format", "query", "json (default) or csv.",
                           schema={"enum": ["json", "csv"]})],
            errors=(400, 404, 503))},
        "/spaces/{space_id}/resets": {"post": _op(
            "Publish resets of the space ({at, count}) or its daily reset ({daily_reset: "
            "{time, tz, count, since} or null})", ACCEPTED, params=[SPACE],
            body=_ref("ResetInput"), errors=WRITE_ERRORS, secured=True, status="202")},
        "/dpus": {"get": _op(
            "Sensor health of every DPU, ordered by id, a page at a time, over all workers",
            _json(_ref("SensorPage"), "a page"),
            params=[_param("after", "query", "Cursor: the previous page's next."),
                    _param("limit", "query", "Page size, 1-1000 (default 100).",
                           schema={"type": "integer"}),
                    _param("status", "query", "Only DPUs of this status.",
                           schema={"enum": ["ok", "silent", "never_seen"]}),
                    _param("silent_after", "query", "Quiet period: 90s, 30m, 2h, 1d (default "
                           "DPU_SILENT_AFTER_S).")],
            errors=(400, 503))},
        "/dpus/{dpu_id}": {"get": _op("One DPU's counts, placement and health",
                                      _json(_ref("Sensor"), "the DPU"), params=[DPU],
                                      errors=(404, 503))},
        "/events": {"post": _op("Publish events (a JSON object, array or NDJSON)", ACCEPTED,
                                body={"oneOf": [_ref("Event"), {"type": "array",
                                                                "items": _ref("Event")}]},
                                errors=WRITE_ERRORS, secured=True, status="202")},
        "/placements": {"post": _op("Publish placements (a JSON object, array or NDJSON)",
                                    ACCEPTED, body={"oneOf": [_ref("Placement"), {
                                        "type": "array", "items": _ref("Placement")}]},
                                    errors=WRITE_ERRORS, secured=True, status="202")},
        "/events/stream": {"get": _op(
            "Live feed (Server-Sent Events): space, dpu and dpu-status events whose data are "
            "the JSON of the HTTP answers",
            {"description": "text/event-stream", "content": {"text/event-stream": {}}},
            params=[_param("events", "query", "Comma-separated kinds: space, dpu, dpu-status "
                           "(default all).")], errors=(400, 503))},
        "/status": {"get": _op("Whether the pipeline is caught up: consumer lag, sink backlog",
                               _json({"type": "object"}, "status"), errors=())},
        "/metrics": {"get": _op("Prometheus metrics", {"description": "Prometheus text format",
                                                       "content": {"text/plain": {}}},
                                errors=())},
        "/openapi.json": {"get": _op("This document", _json({"type": "object"}, "OpenAPI 3.1"),
                                     errors=())},
    }
    obj = lambda props, req=(): {"type": "object", "properties": props,  # noqa: E731
                                 "required": list(req)}
    sign = obj({"space_id": {"type": "string"}, "direction": {"enum": [1, -1]}},
               ("space_id", "direction"))
    schemas = {
        "Error": obj({"error": {"type": "string"}}, ("error",)),
        "Accepted": obj({"accepted": {"type": "integer"}, "rejected": {"type": "array", "items":
                         obj({"index": {"type": "integer"}, "reason": {"type": "string"}})},
                         "unacknowledged": {"type": "array", "items": {"type": "integer"}}},
                        ("accepted", "rejected")),
        "Event": obj({"dpu_id": {"type": ["string", "integer"]}, "timestamp": INSTANT,
                      "direction": {"enum": [1, -1, "1", "-1"]}, "event_id": {"type": "string"}},
                     ("dpu_id", "timestamp", "direction")),
        "Placement": obj({"dpu_id": {"type": "string"}, "doorway_id": {"type": "string"},
                          "installed_at": INSTANT, "spaces": {"type": "array", "items": sign,
                                                              "maxItems": 2}},
                         ("dpu_id", "installed_at", "spaces")),
        "ResetInput": {"oneOf": [
            obj({"at": INSTANT, "count": {"type": "integer"}}, ("at", "count")),
            obj({"daily_reset": {"type": ["object", "null"], "properties": {
                "time": {"type": "string", "pattern": "^HH:MM(:SS)?$"},
                "tz": {"type": "string"}, "count": {"type": "integer"}, "since": INSTANT}}},
                ("daily_reset",))]},
        "SpaceCount": obj({"space_id": {"type": "string"}, "count": {"type": "integer"},
                           "updated_at": {**INSTANT, "type": ["string", "null"]},
                           "at": INSTANT}, ("space_id", "count")),
        "Series": obj({"space_id": {"type": "string"}, "bucket": {"type": "string"},
                       "series": {"type": "array", "items": obj({
                           "start": INSTANT, "entries": {"type": "integer"},
                           "exits": {"type": "integer"}, "count": {"type": "integer"},
                           "min": {"type": "integer"}, "max": {"type": "integer"}})}}),
        "Sensor": obj({"dpu_id": {"type": "string"},
                       "status": {"enum": ["ok", "silent", "never_seen"]},
                       "last_event_at": {**INSTANT, "type": ["string", "null"]},
                       "events_today": {"type": "integer", "description": "events of the "
                                        "current UTC day"},
                       "ins": {"type": "integer"}, "outs": {"type": "integer"},
                       "net": {"type": "integer"},
                       "placement": {"oneOf": [_ref("Placement"), {"type": "null"}]},
                       "rejects": {"type": ["integer", "null"], "description": "records keyed "
                                   "by this DPU the workers refused (null: database down)"}}),
        "SensorPage": obj({"dpus": {"type": "array", "items": _ref("Sensor")},
                           "next": {"type": ["string", "null"]},
                           "statuses": {"type": ["object", "null"], "description": "DPUs per "
                                        "status at the workers' latest scan (every 10 s; null "
                                        "before every worker has scanned once)"},
                           "silent_after_s": {"type": "number"}}),
    }
    reasons = {400: "bad request", 401: "bearer token missing or wrong", 404: "unknown id",
               503: "a service or a worker is not available; try again"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dpu-pipeline HTTP view", "version": _version(),
                 "description": "Occupancy counts from door-sensor (DPU) events. Any worker "
                                "answers any key."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {f"E{code}": _json(_ref("Error"), text)
                          for code, text in reasons.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "required when DPU_INGEST_TOKEN "
                                                          "is set"}},
        },
    }


@app.page("/openapi.json")
class OpenApiView(View):
    async def get(self, request: Request) -> Response:
        return self.json(document())
