"""The HTTP view served by each worker (SPEC §5); importing this package registers every route."""

from pipeline.views import compat, dashboard, history, ingest, live, openapi, realtime, sensors, \
    status  # noqa: F401
