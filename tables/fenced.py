"""Changelog records stamped with their writer's epoch; a restore skips the stale ones.

A worker paused past the session timeout (SIGSTOP, a long stall) loses its partitions to
another worker, which restores their tables and goes on. When the paused worker runs again, the
messages it had handed to the Kafka client before the pause are delivered: table writes older
than its successor's, after them in the changelog. A later restore would read them last and take
them for the newest state. So each changelog record carries the epoch its writer holds for the
partition, higher than any epoch it saw there (and not below its wall clock in µs), and a restore
or a standby skips any record whose epoch is below one already applied for that partition.
Records without a stamp (written before stamps existed) count as epoch 0.
"""

from __future__ import annotations

import time
from typing import Iterable

import faust
from faust.types import EventT

from pipeline.faust_fixes import verified
from pipeline.metrics import metrics

EPOCH_HEADER = "dpu-epoch"


class Epochs:
    """The epochs of one worker process.

    Order is kept per changelog partition: the changelogs of several tables are restored side
    by side, so an older write of one table is not stale for having been read after a newer
    write of another. A writer takes, for partition ``p``, an epoch above every one it saw in
    any table's partition ``p`` (one worker owns partition ``p`` of them all).
    """

    def __init__(self, app) -> None:
        self.app = app
        self.seen: dict[tuple[str, int], int] = {}
        """Highest epoch applied or written, per (changelog topic, partition)."""
        self.mine: dict[int, int] = {}
        """This worker's epoch per partition, for the current group generation."""
        self.generation: int | None = None

    def writing(self, topic: str, partition: int) -> int:
        """The epoch to stamp a write to ``partition`` of changelog ``topic`` with."""
        generation = self.app.consumer_generation_id
        if generation != self.generation:  # a new assignment: new epochs, above the old
            self.mine.clear()
            self.generation = generation
        epoch = self.mine.get(partition)
        if epoch is None:
            before = max((e for (_, p), e in self.seen.items() if p == partition), default=0)
            epoch = self.mine[partition] = max(before + 1, time.time_ns() // 1000)
        if epoch > self.seen.get((topic, partition), 0):
            self.seen[(topic, partition)] = epoch
        return epoch

    def current(self, batch: Iterable[EventT]) -> list[EventT]:
        """The records of a restored batch that are not stale."""
        kept = []
        for event in batch:
            slot = (event.message.topic, event.message.partition)
            epoch = stamp(event)
            if epoch < self.seen.get(slot, 0):
                metrics.stale_changelog_records_skipped.inc()
                continue
            self.seen[slot] = epoch
            kept.append(event)
        return kept


def stamp(event: EventT) -> int:
    for key, value in event.message.headers or ():
        if key == EPOCH_HEADER:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class FencedTable(faust.Table):
    """A Faust table whose changelog records carry their writer's epoch (see the module)."""

    epochs: Epochs

    def send_changelog(self, partition, key, value, key_serializer=None,
                       value_serializer=None):
        # Faust's own, with the stamp: see verify_send_changelog.
        return self.changelog_topic.send_soon(
            key=key, value=value, partition=partition,
            headers=[(EPOCH_HEADER, str(self.epochs.writing(
                self.changelog_topic.get_topic_name(), partition)).encode())],
            key_serializer=self.key_serializer if key_serializer is None else key_serializer,
            value_serializer=(self.value_serializer if value_serializer is None
                              else value_serializer),
            callback=self._on_changelog_sent, eager_partitioning=True)

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        super().apply_changelog_batch(self.epochs.current(batch))


def verify_send_changelog() -> None:
    """FencedTable.send_changelog repeats Faust's with a header added: written against this."""
    from faust.tables.base import Collection

    verified(Collection, "send_changelog", "78a5e11370efe43a")
    verified(Collection, "apply_changelog_batch", "a612598bdc305e1f")
