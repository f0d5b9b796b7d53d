"""Whether this worker may still write what a batch produced.

A batch is taken in one consumer group generation. Its outputs and table writes are only sent
while this worker still owns the batch's partitions: no rebalance since the batch was taken,
and the broker answered a heartbeat within the session timeout, so that the group cannot have
handed the partitions to another worker meanwhile (a worker paused past the session timeout by
SIGSTOP or a long stall learns it lost them only from its next heartbeat). A batch that fails
the first test is given up, unacknowledged: its records are read again by their owner. While
only the heartbeat is missing (the broker away) the batch waits.

A worker the group went on without (silent past the session timeout, then told it is no member)
exits: messages it had handed to the Kafka client before it went silent may have reached the
changelogs after its successor's (the tables skip them on restore, see
``tables.faust_tables.Epochs``), and its own stores, whose persisted offsets followed them, can
no longer be trusted. The next start restores them from the changelogs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Sequence

from faust.types import AppT, EventT, Message

from pipeline.faust_fixes import last_heartbeat, left_out
from pipeline.metrics import metrics

log = logging.getLogger(__name__)

EXIT_LEFT_OUT = 75
"""Exit status of a worker the group went on without (EX_TEMPFAIL: start it again)."""

LEASE_SHARE = 0.8
"""Share of the session timeout a heartbeat answer stays good for."""


class Ownership:
    def __init__(self, app: AppT, session_timeout_s: float) -> None:
        self.app = app
        self.lease_s = session_timeout_s * LEASE_SHARE

    def _coordinator(self):
        try:
            return self.app.consumer._thread._ensure_consumer()._coordinator  # type: ignore
        except Exception:
            return None  # no Kafka consumer (unit tests): the generation test alone

    def taken_in_current_generation(self, records: Sequence[EventT | Message]) -> bool:
        app = self.app
        if app.rebalancing:
            return False
        generation = app.consumer_generation_id
        coordinator = self._coordinator()
        if coordinator is not None and coordinator.generation != generation:
            return False  # a heartbeat found this worker out of the group, or it rejoined
        return all(getattr(getattr(r, "message", r), "generation_id", generation) == generation
                   for r in records)

    def lease_held(self) -> bool:
        coordinator = self._coordinator()
        if coordinator is None:
            return True
        last = last_heartbeat(coordinator)
        return last is not None and time.monotonic() - last < self.lease_s

    def exit_if_left_out(self) -> None:
        coordinator = self._coordinator()
        silent = left_out(coordinator) if coordinator is not None else None
        if silent is not None:
            log.critical("this worker was silent %.0f s, past the session timeout, and the group "
                         "went on without it: exiting, its tables are restored from the "
                         "changelogs at the next start", silent)
            logging.shutdown()
            os._exit(EXIT_LEFT_OUT)

    async def hold(self, records: Sequence[EventT | Message]) -> bool:
        """Wait until writing for ``records`` (Faust events or messages) is safe; False when
        the batch must be given up."""
        self.exit_if_left_out()
        waited = False
        while self.taken_in_current_generation(records):
            if self.lease_held():
                return True
            self.exit_if_left_out()
            if not waited:
                metrics.writes_waited_for_heartbeat.inc()
                waited = True
            await asyncio.sleep(0.05)
        self.exit_if_left_out()
        metrics.batches_given_up_after_rebalance.inc()
        return False
