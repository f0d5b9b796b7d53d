"""The busy input topics handed to their agents a fetch at a time, not record by record.

Faust hands each record to each agent that reads its topic on its own: in the consumer's drain
loop four tasks, an ``asyncio.wait`` and three cancels per record, then an event-loop turn per
record in the stream; about 74 µs a record here, so an agent that does nothing reads 13,600
records/s. For the topics a :class:`BulkInput` names, the drain loop (``install`` replaces
Faust's) hands each partition's fetched records to their subscribers as one list. A subscriber
takes lists until it has a batch, and acknowledges each record once the batch is applied.

Everything else stays Faust's own: offsets read, gaps, generations, the tracking and
acknowledgement of each record (``Consumer.track_message``, ``Message.ack``), so commits, the
fixes of ``pipeline.faust_fixes`` and the commit watchdog treat these records as any other.
Other topics go through Faust's per-record path as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import AsyncIterator, Iterable

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import AppT, Message

from pipeline import bulk_restore
from pipeline.faust_fixes import verified
from pipeline.metrics import metrics

log = logging.getLogger(__name__)


class Batch(list):
    """Records of one batch, in the order read (per partition, offset order)."""

    def ack(self, consumer) -> None:
        """Acknowledge every record: the batch is applied."""
        for message in self:
            message.ack(consumer)


class Subscription:
    """One agent's share of the bulk topics: the lists handed to it, bounded in records."""

    def __init__(self, app: AppT, name: str, topics: Iterable[str], max_buffered: int) -> None:
        self.app = app
        self.name = name
        self.topics = frozenset(topics)
        self.max_buffered = max_buffered
        """Records held before the drain loop waits (a stalled agent stalls its topics)."""
        self._lists: deque[list[Message]] = deque()
        self._buffered = 0
        self._changed = asyncio.Event()

    @property
    def full(self) -> bool:
        return self._buffered >= self.max_buffered

    async def put(self, messages: list[Message]) -> None:
        while self.full:
            self._changed.clear()
            await self._changed.wait()
        self.put_nowait(messages)

    def put_nowait(self, messages: list[Message]) -> None:
        """Add a list whatever the records held (callers check ``full`` first)."""
        self._lists.append(messages)
        self._buffered += len(messages)
        self._changed.set()

    def _take(self) -> list[Message]:
        messages = self._lists.popleft()
        self._buffered -= len(messages)
        self._changed.set()
        return messages

    async def batches(self, max_records: int, within_s: float) -> AsyncIterator[Batch]:
        """Batches of at least one record, of the lists waiting (taken whole while the batch
        holds fewer than ``max_records``), paced: a batch starts no sooner than ``within_s``
        after the one before started, unless ``max_records`` are waiting. Under a backlog a
        batch takes longer than that to apply, so the next starts at once; at a low rate the
        records of ``within_s`` share one batch and its writes instead of a few each."""
        loop = asyncio.get_running_loop()
        started = float("-inf")
        while True:
            while not self._lists:
                self._changed.clear()
                await self._changed.wait()
            deadline = started + within_s
            while self._buffered < max_records:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    break
            started = loop.time()
            batch = Batch(self._current(self._take()))
            while len(batch) < max_records and self._lists:
                batch.extend(self._current(self._take()))
            if batch:
                yield batch

    def _current(self, messages: list[Message]) -> list[Message]:
        """The records fetched in the current group generation. Older ones are dropped
        unacknowledged: after a rebalance Faust reads every partition again from its committed
        offset (as its streams skip such records)."""
        generation = self.app.consumer_generation_id
        if messages and messages[0].generation_id == generation:
            return messages
        unacked = self.app.consumer._unacked_messages
        kept = []
        for message in messages:
            if message.generation_id == generation:
                kept.append(message)
            else:
                unacked.discard(message)
                metrics.stale_records_dropped.inc()
        return kept


class BulkInput:
    """The topics whose records go to subscribers in lists, and those subscribers."""

    def __init__(self, app: AppT) -> None:
        self.app = app
        self.subscriptions: list[Subscription] = []
        self.by_topic: dict[str, list[Subscription]] = {}

    def subscribe(self, name: str, topics: Iterable[str],
                  max_buffered: int = 50_000) -> Subscription:
        sub = Subscription(self.app, name, topics, max_buffered)
        self.subscriptions.append(sub)
        for topic in sub.topics:
            self.by_topic.setdefault(topic, []).append(sub)
        return sub

    def deliver_now(self, consumer: Consumer, messages: list[Message]) -> bool:
        """Track the records of one fetched partition and hand them to each subscriber at
        once, without yielding to the event loop; False, nothing done, if one is full.

        Awaiting each partition's hand-over made the drain loop wait a loop turn per
        partition of a fetch (16 of them at 2,000 events/s), each long enough for a sink or a
        batch to run, before it asked for the next fetch: records waited that much longer
        to be fetched and counted."""
        subs = self.by_topic[messages[0].topic]
        if any(sub.full for sub in subs):
            return False
        self._track(consumer, messages, len(subs))
        for sub in subs:
            sub.put_nowait(messages)
        return True

    async def deliver(self, consumer: Consumer, messages: list[Message]) -> None:
        """Track the records of one fetched partition and hand them to each subscriber,
        waiting for room in each."""
        subs = self.by_topic[messages[0].topic]
        self._track(consumer, messages, len(subs))
        for sub in subs:
            await sub.put(messages)

    @staticmethod
    def _track(consumer: Consumer, messages: list[Message], n: int) -> None:
        track = consumer.track_message
        for message in messages:
            message.refcount = n  # each subscriber acknowledges it once
            track(message)


def bulk_input(app: AppT) -> BulkInput:
    """The app's bulk input (made on first use)."""
    found = app.__dict__.get("dpu_bulk_input")
    if found is None:
        found = app.__dict__["dpu_bulk_input"] = BulkInput(app)
    return found


def install() -> None:
    """Replace Faust's drain loop by one that hands bulk topics' records over in lists."""
    if getattr(Consumer._drain_messages, "bulk", False):
        return
    original = verified(Consumer, "_drain_messages", "8f35dd7a11144daa")
    # ``drain`` repeats these two and relies on the next two.
    verified(Consumer, "getmany", "e486c434b7928ee8")
    verified(Consumer, "_wait_next_records", "ba40cd3671328d3b")
    verified(Consumer, "track_message", "e43b88ec93553217")
    bulk_restore.verify_relied_on()

    async def _drain_messages(self: Consumer, fetcher) -> None:  # pragma: no cover - I/O loop
        bulk = self.app.__dict__.get("dpu_bulk_input")
        if bulk is None or not bulk.by_topic:
            return await original(self, fetcher)
        await drain(self, fetcher, bulk)

    _drain_messages.bulk = True  # type: ignore[attr-defined]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


async def drain(self: Consumer, fetcher, bulk: BulkInput) -> None:  # pragma: no cover
    """Faust's ``_drain_messages`` and ``getmany`` in one loop, the bulk topics' records handed
    over a fetched partition at a time."""
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    acks_enabled_for = self.app.topics.acks_enabled_for
    to_message = self._to_message
    bulk_topics = bulk.by_topic
    changelogs = self.app.tables._changelogs  # by changelog topic, as tables are added
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            records, active = await self._wait_next_records(1.0)
            await self.sleep(0)
            if records is None or self.should_stop:
                unset_flag(CONSUMER_FETCHING)
                continue
            if not self.flow_active:
                # As Faust's getmany: read every partition again from its committed offset.
                try:
                    await self.perform_seek()
                except Exception as exc:
                    self.log.warning(f"exception performing seek when flow not active {exc}")
                unset_flag(CONSUMER_FETCHING)
                continue
            generation = self.app.consumer_generation_id
            for tp, fetched in records.items():
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    break
                if active is not None and tp not in active and \
                        tp not in self._buffered_partitions:
                    continue
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                r_offset = get_read_offset(tp)
                acks = acks_enabled_for(tp.topic)
                in_bulk = tp.topic in bulk_topics
                if in_bulk or (tp.topic in changelogs and bulk_restore.restoring(self.app, tp)):
                    # A fetched partition at a time: to its bulk subscribers, or restored into
                    # its table in one batch.
                    messages = [to_message(tp, r) for r in fetched
                                if r_offset is None or r.offset >= r_offset]
                    if not messages:
                        continue
                    if in_bulk:
                        previous = r_offset
                        for message in messages:
                            if acks and previous and message.offset - previous > 1:
                                await self._add_gap(tp, previous + 1, message.offset)
                            previous = message.offset
                        await _commit_if_due(self)
                        if not bulk.deliver_now(self, messages):
                            await self.wait_first(bulk.deliver(self, messages),
                                                  self.suspend_flow.wait())
                    else:
                        await self.wait_first(
                            bulk_restore.restore(self.app, tp, messages, callback),
                            self.suspend_flow.wait())
                    set_read_offset(tp, messages[-1].offset)
                    continue
                for record in fetched:
                    offset = record.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue
                    if acks and r_offset and offset - r_offset > 1:
                        await self._add_gap(tp, r_offset + 1, offset)
                    await _commit_if_due(self)
                    await self.wait_first(callback(to_message(tp, record)),
                                          self.suspend_flow.wait())
                    set_read_offset(tp, offset)
            unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _commit_if_due(self: Consumer) -> None:
    commit_every = self._commit_every
    if commit_every is not None and self._n_acked >= commit_every:
        self._n_acked = 0
        await self.commit()
