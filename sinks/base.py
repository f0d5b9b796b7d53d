"""The sink contract: ``add`` buffers, ``flush`` writes the whole buffer idempotently.

A flush tells two kinds of failure apart. A transient one (the connection lost, the server
shutting down or out of resources) is retried with capped exponential backoff until it
succeeds, so the agent that feeds a sink only acknowledges its records (and Kafka only commits
their offsets) once they are written: nothing is lost while a database is down, and since every
write is an upsert keyed by the record's source, nothing is doubled when records are delivered
again. A permanent one (the data itself is refused: a text PostgreSQL cannot store, a number
out of range, a constraint) would fail every retry and stall the pipeline for good: the batch
is split until the refused input record is alone, the others are written, and that one is
filed in ``dpu_rejects`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Generic, Sequence, TypeVar, Union

import orjson

from pipeline.metrics import metrics

log = logging.getLogger(__name__)

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class RejectSource:
    """The input record a sink's rows came from: where it is filed if it cannot be written."""

    topic: str
    """Kafka topic of the record."""
    partition: int
    """Its partition."""
    offset: int
    """Its offset."""
    raw: bytes | Any
    """The record's value (or the part of it that could not be written): bytes, or a
    JSON-able value encoded only when it is filed (one item of a grouped message)."""
    kafka_ts: datetime | None = None
    """The record's Kafka timestamp."""
    key: str | None = None
    """The record's key as ``dpu_rejects.record_key`` keeps it (for one value of a grouped
    message, the value's own key)."""


Source = Union[RejectSource, tuple[RejectSource, Any, Any], None]
"""Where an input record came from: its Kafka record, or for one value of a grouped message
``(the message's source, the value, its key)``, made a :class:`RejectSource` only if it is filed
(``resolved``); None when it cannot be filed (it is logged then)."""


def resolved(source: Source) -> RejectSource | None:
    if isinstance(source, tuple):
        message, value, key = source
        return replace(message, raw=value, key=key if isinstance(key, str) else None)
    return source


@dataclass(slots=True)
class Item(Generic[Row]):
    """The rows one input record gives a sink: written together, or refused together."""

    rows: list[Row]
    """Rows to write."""
    source: Source
    """Where the record came from (see ``Source``)."""
    refused: str | None = None
    """Why the record cannot be written at all (its rows could not even be built)."""
    split: Callable[[], list["Item[Row]"]] | None = None
    """For the rows of a whole grouped message: the same rows per value, each value an item
    of its own (its rows as given to ``add_item``), made only when the database refuses the
    message's rows, so that the value refused is filed alone."""


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
    """The latest transient failure, cleared by the next success."""
    rejected: int = 0
    """Input records refused for good and filed in ``dpu_rejects``."""
    last_rejected: str | None = None
    """Why the latest one was refused."""
    writing: bool = False
    """A write is under way (a slow database holds the sink's acknowledgements meanwhile)."""


class PermanentFailure(Exception):
    """Writing these rows fails whatever the retries: the data itself is refused."""


class BatchingSink(ABC, Generic[Row]):
    """Buffer rows, write them in one idempotent batch, retry outages, refuse bad records."""

    name = "sink"
    initial_backoff_s = 0.1
    max_backoff_s = 5.0
    permanent_errors: tuple[type[BaseException], ...] = (ValueError, TypeError, OverflowError)
    """Errors that say the rows themselves cannot be written (no retry can help)."""

    def __init__(self) -> None:
        self._buffer: list[Item[Row]] = []
        self._pending_rows = 0
        self.stats = SinkStats()

    def add(self, row: Row, source: RejectSource | None = None) -> None:
        """Buffer one row, an input record of its own."""
        self.add_item([row], source)

    def add_item(self, rows: list[Row], source: Source,
                 split: Callable[[], list[Item[Row]]] | None = None) -> None:
        """Buffer the rows of one input record, or with ``split`` (see ``Item.split``) of
        every value of a grouped message."""
        for item in self.items(rows, source, split):
            self._buffer.append(item)
            self._pending_rows += len(item.rows)
        self.stats.pending = self._pending_rows

    def items(self, rows: list, source: Source,
              split: Callable[[], list[Item[Row]]] | None = None) -> list[Item[Row]]:
        """What the sink buffers of rows given to ``add_item``."""
        return [Item(rows, source, split=split)]

    def value_items(self, split: Callable[[], list[Item[Row]]]) -> list[Item[Row]]:
        """A grouped message's values (``Item.split``), each an item of its own."""
        return [item for value in split()
                for item in ([value] if value.refused else self.items(value.rows, value.source))]

    def add_refused(self, source: Source, reason: str) -> None:
        """An input record whose rows could not be built: filed as a reject at the next flush."""
        self._buffer.append(Item([], source, reason))

    async def flush(self) -> None:
        if not self._buffer:
            return
        items = self._buffer
        refused: list[tuple[Item[Row], str]] = [(i, i.refused) for i in items if i.refused]
        await self._write_splitting([i for i in items if not i.refused], refused)
        if refused:
            await self._file(refused)
        self.stats.batches += 1
        self.stats.rows += self._pending_rows
        self._buffer = []
        self._pending_rows = 0
        self.stats.pending = 0

    async def _write_splitting(self, items: list[Item[Row]],
                               refused: list[tuple[Item[Row], str]]) -> None:
        """Write ``items``; on a permanent failure, halves of them, down to the refused one."""
        if not items:
            return
        try:
            await self._retrying(self.write, [row for item in items for row in item.rows])
        except PermanentFailure as exc:
            if len(items) == 1 and items[0].split is not None:
                values = self.value_items(items[0].split)
                refused.extend((v, v.refused) for v in values if v.refused)
                await self._write_splitting([v for v in values if not v.refused], refused)
                return
            if len(items) == 1:
                refused.append((items[0], str(exc)))
                return
            half = len(items) // 2
            await self._write_splitting(items[:half], refused)
            await self._write_splitting(items[half:], refused)

    async def _retrying(self, write, rows) -> None:
        """``await write(rows)``, retried with backoff until it succeeds or fails for good."""
        backoff = self.initial_backoff_s
        while True:
            started = time.perf_counter()
            self.stats.writing = True
            try:
                await write(rows)
            except asyncio.CancelledError:
                raise
            except self.permanent_errors as exc:  # its transaction was rolled back
                raise PermanentFailure(describe(exc)) from exc
            except Exception as exc:  # an outage or a bad connection: retry, never drop
                self.stats.failures += 1
                self.stats.last_error = describe(exc)
                log.warning("%s: write failed (%s), retrying in %.1fs",
                            self.name, self.stats.last_error, backoff)
                await self.reset()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            finally:
                self.stats.writing = False
            metrics.sink_write_seconds.labels(self.name).observe(time.perf_counter() - started)
            self.stats.last_error = None
            return

    async def _file(self, refused: list[tuple[Item[Row], str]]) -> None:
        """File refused records in ``dpu_rejects`` (where the sink has one), and count them."""
        for item, reason in refused:
            self.stats.rejected += 1
            self.stats.last_rejected = reason
            src = resolved(item.source)
            log.warning("%s: refused %s: %s", self.name,
                        f"{src.topic}[{src.partition}]@{src.offset}" if src else "a record",
                        reason)
        sources = [(resolved(item.source), f"{self.name} sink: {reason}")
                   for item, reason in refused if item.source is not None]
        if not sources:
            return
        try:
            await self._retrying(self.write_rejects, sources)
        except PermanentFailure as exc:  # nothing more can be kept of them than the log line
            log.error("%s: could not file %d rejects: %s", self.name, len(sources), exc)

    @abstractmethod
    async def write(self, rows: list[Row]) -> None:
        """Write every row; must be idempotent (rows may have been written before)."""

    async def write_rejects(self, rejects: list[tuple[RejectSource, str]]) -> None:
        """File refused input records with their reasons; a sink without a table logs them."""

    async def reset(self) -> None:
        """Drop connections after a failure; the next write reconnects."""

    async def close(self) -> None:
        await self.reset()


def describe(exc: BaseException) -> str:
    """One line about an error, for logs, ``/status`` and ``dpu_rejects``."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:300]


def printable(text: str) -> str:
    """``text`` with control characters escaped: any text PostgreSQL can store."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def reject_rows(sources: Sequence[tuple[RejectSource, str]]) -> list[tuple]:
    """Rows of ``dpu_rejects`` for refused records."""
    return [(s.topic, s.partition, s.offset, printable(reason),
             s.raw if isinstance(s.raw, bytes) else orjson.dumps(s.raw), s.kafka_ts, s.key)
            for s, reason in sources]
