"""Batches of a stream's events, each acknowledged only once the agent says it was applied.

Faust's ``Stream.take_events`` acknowledges a batch in a ``finally``: when the agent raised on
one record, or was cancelled mid-flush (SIGTERM while PostgreSQL is down), the whole batch was
acknowledged all the same and the next commit passed records never applied. Here a batch is
acknowledged only if the agent called ``batch.applied()`` before asking for the next one; a
batch left by an exception or a cancellation, or given up (a rebalance took its partitions),
stays unacknowledged, so its records are read again from the committed offset.
"""

from __future__ import annotations

import logging
import os
from typing import AsyncIterator

from faust.types import EventT, StreamT

from pipeline.metrics import metrics

log = logging.getLogger(__name__)

EXIT_AGENT_FAILED = 70
"""Exit status of a worker whose agent failed on a batch (EX_SOFTWARE)."""


class Batch(list):
    """The events of one batch; ``applied()`` lets them be acknowledged."""

    done = False

    def applied(self) -> None:
        """Every record of the batch is applied: acknowledge them (when the next is taken)."""
        self.done = True


class _AckGate:
    """Stands in for ``stream.ack``: passes on the acknowledgements of applied batches only."""

    def __init__(self, stream: StreamT) -> None:
        self.ack = stream.ack
        self.batch: Batch | None = None

    async def __call__(self, event: EventT) -> bool:
        if self.batch is not None and self.batch.done:
            return await self.ack(event)
        metrics.records_left_unacknowledged.inc()
        return False


async def applied_batches(stream: StreamT, max_: int, within: float) -> AsyncIterator[Batch]:
    """Like ``stream.take_events(max_, within)``; a batch is acknowledged only if applied."""
    gate = _AckGate(stream)
    # take_events acknowledges through ``self.ack`` once the caller is done with its batch.
    stream.ack = gate  # type: ignore[method-assign]
    async for events in stream.take_events(max_, within=within):
        gate.batch = Batch(events)
        yield gate.batch


def exit_on_agent_failure(agent: str, exc: BaseException) -> None:
    """End the worker: its agent failed on a batch, which stays unacknowledged.

    A Faust agent that raised is restarted by its supervisor, but the restarted agent was seen
    acknowledging records it never handled (a unit test shows it). Exiting keeps every record
    after the failed batch uncommitted: the next worker reads them again. Per-record errors
    never get here (they are dead letters); this is for a producer that cannot deliver.
    """
    log.critical("agent %s failed on a batch (%s: %s); exiting so that it is read again after "
                 "a restart", agent, type(exc).__name__, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_AGENT_FAILED)
