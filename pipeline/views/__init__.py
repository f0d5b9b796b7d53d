"""The HTTP view served by each worker (SPEC §5); importing this package registers every route."""

from pipeline.views import compat, history, ingest, realtime, status  # noqa: F401
