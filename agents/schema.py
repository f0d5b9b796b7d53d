"""Applies the schema migrations once PostgreSQL answers, for a worker that started without it.

Counting needs only Kafka: a worker (re)started while PostgreSQL is down counts, and its sinks
wait and retry. The migrations it could not apply at start are applied by this timer as soon
as the database answers (``dpu db migrate`` does the same by hand).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pipeline.app import cfg, timer
from pipeline.db import DatabaseUnavailable, migrate

log = logging.getLogger(__name__)


@dataclass
class Schema:
    migrated: bool = False
    """Whether this worker has applied the migrations."""


schema = Schema()


@timer(interval=2.0, name="migrate-schema")
async def migrate_schema() -> None:
    if schema.migrated:
        return
    try:
        applied = await asyncio.get_running_loop().run_in_executor(None, migrate,
                                                                   cfg.database_url)
    except DatabaseUnavailable as exc:
        log.warning("schema not migrated yet: %s", exc)
        return
    schema.migrated = True
    log.warning("PostgreSQL answers: %d migration(s) applied", len(applied))
