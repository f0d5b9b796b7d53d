"""Whether this worker may still write what a batch produced.

A batch is taken in one consumer group generation. Its outputs and table writes are only sent
while this worker still owns the batch's partitions: no rebalance since the batch was taken,
and the broker answered a heartbeat within the session timeout, so that the group cannot have
handed the partitions to another worker meanwhile (a worker paused past the session timeout by
SIGSTOP or a long stall learns it lost them only from its next heartbeat). A batch that fails
the first test is given up, unacknowledged: its records are read again by their owner. While
only the heartbeat is missing (the broker away) the batch waits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

from faust.types import AppT, EventT

from pipeline.faust_fixes import last_heartbeat
from pipeline.metrics import metrics

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

    def taken_in_current_generation(self, events: Sequence[EventT]) -> bool:
        app = self.app
        if app.rebalancing:
            return False
        generation = app.consumer_generation_id
        coordinator = self._coordinator()
        if coordinator is not None and coordinator.generation != generation:
            return False  # a heartbeat found this worker out of the group, or it rejoined
        return all(getattr(e.message, "generation_id", generation) == generation
                   for e in events)

    def lease_held(self) -> bool:
        coordinator = self._coordinator()
        if coordinator is None:
            return True
        last = last_heartbeat(coordinator)
        return last is not None and time.monotonic() - last < self.lease_s

    async def hold(self, events: Sequence[EventT]) -> bool:
        """Wait until writing for ``events`` is safe; False when the batch must be given up."""
        waited = False
        while self.taken_in_current_generation(events):
            if self.lease_held():
                return True
            if not waited:
                metrics.inc("writes_waited_for_heartbeat")
                waited = True
            await asyncio.sleep(0.05)
        metrics.inc("batches_given_up_after_rebalance")
        return False
