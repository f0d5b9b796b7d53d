"""The sink contract: ``add`` buffers, ``flush`` writes the whole buffer idempotently.

A flush that fails on an outage is retried with capped exponential backoff until it succeeds, so
the agent that feeds a sink only acknowledges its records (and Kafka only commits their offsets)
once they are written: nothing is lost while a database is down, and since every write is an
upsert keyed by the record's source, nothing is doubled when records are delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.metrics import metrics

log = logging.getLogger(__name__)

Row = TypeVar("Row")


@dataclass
class SinkStats:
    batches: int = 0
    """Batches written."""
    rows: int = 0
    """Rows written (including rows the upsert found already there)."""
    failures: int = 0
    """Failed write attempts (each retried)."""
    pending: int = 0
    """Rows buffered and not yet written."""
    last_error: str | None = None
    """The latest failure, cleared by the next success."""


class BatchingSink(ABC, Generic[Row]):
    """Buffer rows, write them in one idempotent batch, retry outages with backoff."""

    name = "sink"
    initial_backoff_s = 0.1
    max_backoff_s = 5.0

    def __init__(self) -> None:
        self._buffer: list[Row] = []
        self.stats = SinkStats()

    def add(self, row: Row) -> None:
        self._buffer.append(row)
        self.stats.pending = len(self._buffer)

    async def flush(self) -> None:
        if not self._buffer:
            return
        backoff = self.initial_backoff_s
        while True:
            started = time.perf_counter()
            try:
                await self.write(self._buffer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage or a bad connection: retry, never drop
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}".strip()[:300]
                log.warning("%s: write failed (%s), retrying in %.1fs",
                            self.name, self.stats.last_error, backoff)
                await self.reset()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            metrics.observe_ms("sink_write", (time.perf_counter() - started) * 1000)
            self.stats.batches += 1
            self.stats.rows += len(self._buffer)
            self.stats.last_error = None
            self._buffer.clear()
            self.stats.pending = 0
            return

    @abstractmethod
    async def write(self, rows: list[Row]) -> None:
        """Write every row; must be idempotent (rows may have been written before)."""

    async def reset(self) -> None:
        """Drop connections after a failure; the next write reconnects."""

    async def close(self) -> None:
        await self.reset()
