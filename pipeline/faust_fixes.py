"""Work-arounds for faust-streaming behaviour that broke the pipeline's guarantees in our tests.

Each is applied once, when the app module is imported, and says what it fixes and how it was seen.
Each first checks that the method it replaces is the one it was written against (a fingerprint
of its source): another Faust or aiokafka release stops the worker at start with a clear error
instead of running a fix over code it no longer fits.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import textwrap
import time

from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer

from pipeline.metrics import metrics

log = logging.getLogger(__name__)

WRITTEN_AGAINST = "faust-streaming 0.15.3 and aiokafka 0.14.0"
"""The releases the fixes were written against (pinned in pyproject.toml)."""


class FaustChanged(RuntimeError):
    """A method a fix replaces or relies on is not the one it was written against."""


def fingerprint(function) -> str:
    """A short digest of a function's source (a mode ``Service.task``'s own function)."""
    source = textwrap.dedent(inspect.getsource(getattr(function, "fun", function)))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def verified(cls, name: str, expected: str):
    """``cls.name`` if it is the code a fix was written against; else FaustChanged."""
    original = getattr(cls, name)
    found = fingerprint(original)
    if found != expected:
        raise FaustChanged(
            f"pipeline/faust_fixes.py was written against {cls.__module__}.{cls.__qualname__}"
            f".{name} of {WRITTEN_AGAINST}, and the installed one differs (fingerprint {found},"
            f" expected {expected}): install the pinned versions (scripts/setup), or check the "
            "fix against the new code and update its fingerprint")
    return original


def verify_relied_on() -> None:
    """Faust code the pipeline relies on without replacing it: ``agents.batching`` lets
    ``take_events`` acknowledge through ``stream.ack``."""
    from faust.streams import Stream

    verified(Stream, "take_events", "3eabc46f38f44665")
    verified(Stream, "ack", "c3cfc8c4fc8f0e58")


def keep_newer_committed_offsets() -> None:
    """Never let a partition's committed offset move backwards in the consumer's bookkeeping.

    When table recovery finishes, Faust reads the group's committed offsets again
    (``perform_seek``). Batches processed while recovery ran may have committed meanwhile, and the
    answer can predate those commits. Faust then believes the older offset, while the offsets
    acknowledged after it are already gone from its ack list: it never commits that partition
    again (seen after a restart with deleted local state: lag stuck at hundreds of records, and
    every record since then read again at the next start). Keeping the newer of the two is safe:
    an offset is only recorded as committed after its batch was processed and its outputs
    flushed. A partition with no committed offset is read from its first offset (below).
    """
    if getattr(Consumer.perform_seek, "keeps_newer", False):
        return
    original = verified(Consumer, "perform_seek", "2b4ceebd23deb7ee")

    async def perform_seek(self: Consumer) -> None:
        before = {tp: offset for tp, offset in self._committed_offset.items()
                  if offset is not None}
        forget_acks_before_seek(self)
        await original(self)
        unknown = []
        for tp in self.assignment():
            if tp.topic.endswith("-changelog"):
                continue  # read for recovery, never committed
            now, kept = self._committed_offset.get(tp), before.get(tp)
            if kept is not None and (now is None or kept > now):
                self._committed_offset[tp] = kept
            elif now is None:
                unknown.append(tp)
        # A partition the group never committed (or committed at 0) is left as it is by
        # aiokafka's seek, and Faust then knows no committed offset for it: it kept its fetch
        # position, past records handed to a batch a rebalance made give up, and its first
        # commit went past whatever was acknowledged first, records below never processed
        # included (seen in the fault campaign: a DPU's first 88 events never counted). Such
        # a partition starts at its first offset, as reading from the start means.
        if unknown:
            metrics.partitions_read_from_the_start.inc(len(unknown))
            for tp, first in (await self.earliest_offsets(*unknown)).items():
                self._committed_offset[tp] = first
                await self.seek(tp, first)

    perform_seek.keeps_newer = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def forget_acks_before_seek(consumer: Consumer) -> None:
    """Drop the acknowledgements recorded for assigned partitions before they are read again.

    Faust seeks every assigned partition to its committed offset once a rebalance's recovery is
    done, and everything from there is read and acknowledged again. Acknowledgements recorded
    since the partitions were revoked are of records that will be read again, and some are of
    records never processed: while a rebalance runs, Faust's streams skip the records they
    still hold and acknowledge them. Kept, they would let the next commit pass records not yet
    processed again. (Read in Faust's source; not seen in our fault runs, where it logs.)
    """
    for tp in consumer.assignment():
        acked = consumer._acked.pop(tp, None)
        consumer._acked_index.pop(tp, None)
        if acked:
            metrics.acks_forgotten_at_seek.inc(len(acked))
            log.warning("forgot %d acknowledgements of %s (%d..%d) before reading it again from "
                        "%s", len(acked), tp, min(acked), max(acked),
                        consumer._committed_offset.get(tp))


def commit_only_past_acknowledged_heads() -> None:
    """Never commit a partition past a record that was not acknowledged.

    A committed offset is the next record to read. Faust commits a partition once its acked
    offsets start at most one above that offset, so a record that never reached the agents is
    committed past as soon as the one after it is acknowledged, and Faust does skip records
    (below). The head record must be acknowledged or be a known gap in the topic; otherwise
    the partition waits, and the commit watchdog reads it again.
    """
    if getattr(Consumer._new_offset, "strict_head", False):
        return
    original = verified(Consumer, "_new_offset", "2b29afe4dd9a65a3")

    def _new_offset(self: Consumer, tp):
        acked, committed = self._acked.get(tp), self._committed_offset.get(tp)
        if acked and committed is not None:
            gaps = self._gap.get(tp)
            head = min(acked)
            if head > committed and not (gaps and all(
                    gaps.overlaps_point(offset) for offset in range(committed, head))):
                return None
        return original(self, tp)

    _new_offset.strict_head = True  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def no_gaps_from_fetch_jumps() -> None:
    """Do not take a jump in fetched offsets for offsets missing from the topic.

    When a fetched record's offset is more than one above the last one read, Faust records the
    offsets between as a gap (meant for transaction markers) and commits past them as if
    acknowledged. After a restart, records were fetched and processed before recovery sought
    back to the committed offset, and the next fetch jumped ahead of it: Faust recorded a gap
    of records never processed and committed past them (seen in the kill -9 runs: gaps of 36
    to 162 offsets of the events topic with the agents never given those records; a telemetry
    sink that lost 296 rows the same way). A jump is now only suspected (``suspected_gaps``);
    the commit watchdog reads the offsets and records the gap if no record is there.
    """
    if getattr(Consumer._add_gap, "verified_only", False):
        return
    verified(Consumer, "_add_gap", "f1cc1db634f5ea09")

    async def _add_gap(self: Consumer, tp, offset_from: int, offset_to: int) -> None:
        # Faust's range ends with the record that arrived after the jump: it is no gap.
        if offset_from < offset_to:
            metrics.fetch_jumps.inc()
            suspected_gaps(self).setdefault(tp, []).append((offset_from, offset_to))

    _add_gap.verified_only = True  # type: ignore[attr-defined]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]


def suspected_gaps(consumer: Consumer) -> dict:
    """``{tp: [(start, end), ...]}``: offset ranges a fetch jumped over, not yet read through."""
    return consumer.__dict__.setdefault("dpu_suspected_gaps", {})


def record_gap(consumer: Consumer, tp, start: int, end: int) -> None:
    """Offsets ``[start, end)`` of ``tp`` hold no record (read through): commit past them.

    Written to Faust's gap tree directly: its own ``_add_gap`` starts a gap one past the
    committed offset, so a marker right at the committed offset could never be passed.
    """
    gaps = consumer._gap[tp]
    gaps.addi(start, end)
    gaps.merge_overlaps()


def flush_until_sent() -> None:
    """Make the producer's flush wait until every buffered message is handed to Kafka.

    Faust buffers what ``send_soon`` produces (table changelogs, our outputs) and its flush
    returns as soon as one message takes more than 0.1 s to leave the buffer, with the rest still
    in it. Each counting batch flushes before it writes its state and before it is acknowledged,
    and Faust flushes before it commits offsets: a short flush lets a commit pass records whose
    state writes are still buffered, for a kill to lose. The flush now keeps draining until the
    buffer is empty (``producer_flush_stalls`` counts the times Faust's would have stopped) and
    the message taken from it last is in the Kafka client's batches; the client's own flush then
    waits for the acknowledgements.

    That last message matters: Faust takes a message off the buffer, then awaits the client's
    ``send``, which waits while the partition's batch is full. An empty buffer therefore did not
    mean every message was sent: the client's flush missed the one in transit, a batch wrote the
    states that say its outputs were delivered, and a kill could lose those outputs. (A kill -9
    run of the fault suite lost eight deltas of one space with every DPU count right; this is
    the path found that explains it.)
    """
    if getattr(ProducerBuffer.flush, "until_sent", False):
        return
    verified(ProducerBuffer, "flush", "95dd35cdc3ce50b5")
    send_pending = verified(ProducerBuffer, "_send_pending", "cb00d4e896f85576")

    async def _send_pending(self: ProducerBuffer, fut) -> None:
        self.__dict__["dpu_in_transit"] = self.__dict__.get("dpu_in_transit", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self.__dict__["dpu_in_transit"] -= 1

    async def flush(self: ProducerBuffer) -> None:
        await self.flush_atmost(None)
        while self.size or self.__dict__.get("dpu_in_transit"):
            metrics.producer_flush_stalls.inc()
            if self.size:
                await self.flush_atmost(None)
                continue
            # Set by Faust's sender once the message in transit is in the client's batches.
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass

    flush.until_sent = True  # type: ignore[attr-defined]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]


def ignore_acks_from_earlier_generations() -> None:
    """Acknowledge a record only for the consumer group generation that fetched it.

    On a rebalance Faust clears its ack lists, then seeks every assigned partition back to its
    committed offset, so records fetched before it are read again. But a stream still holding
    such a record acks it afterwards: Faust's stream loop acks every record it skips for being
    from an older generation (its comment: "otherwise the lag would increase"), and a batch in
    progress acks its records when it ends. Those offsets land in the new generation's ack list
    (with no committed offset known yet, any offset is accepted), above records not yet read
    again: once the records below are acknowledged, Faust commits past the unread ones, and a
    kill then loses them. Dropping the stale acknowledgement is safe: the record is read again
    from the committed offset, and processing is idempotent per source offset. (Read in Faust's
    source; not seen in our fault runs, where it logs.)
    """
    if getattr(Consumer.ack, "by_generation", False):
        return
    original = verified(Consumer, "ack", "5548cf0f75843f73")

    def ack(self: Consumer, message) -> bool:
        generation = getattr(message, "generation_id", None)
        if generation is not None and generation != self.app.consumer_generation_id:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                metrics.stale_acks.inc()
                log.warning("dropped the ack of %s offset %d, read in generation %s (now %s; "
                            "committed %s): it is read again", message.tp, message.offset,
                            generation, self.app.consumer_generation_id,
                            self._committed_offset.get(message.tp))
            return False
        return original(self, message)

    ack.by_generation = True  # type: ignore[attr-defined]
    Consumer.ack = ack  # type: ignore[method-assign]


def stalled_partitions(consumer: Consumer) -> dict:
    """Partitions whose commits cannot advance: ``{tp: (committed, first acked after the gap)}``.

    Faust commits a partition up to its first unacknowledged offset. After a restart that
    recovered tables, offsets just above the committed one were seen missing from its ack list
    while nothing in flight could fill them (acked offsets piling up above, commits stuck for
    good). Such a partition is read again from its committed offset: processing is idempotent
    per source offset, so reading records twice changes nothing but lets them be acknowledged.
    """
    in_flight: dict = {}
    for message in list(consumer._unacked_messages):
        in_flight[message.tp] = min(message.offset, in_flight.get(message.tp, message.offset))
    stalled = {}
    for tp in consumer.assignment():
        acked, committed = consumer._acked.get(tp), consumer._committed_offset.get(tp)
        if not acked or committed is None:
            continue
        low = min(acked)
        if low > committed and in_flight.get(tp, low) >= low:
            stalled[tp] = (committed, low)
    return stalled


def record_heartbeats() -> None:
    """Note on the group coordinator when the broker last answered a heartbeat as a member.

    A worker paused past the session timeout (SIGSTOP, a long stall) has lost its partitions
    when it runs again, but learns so only from its next heartbeat; until then it would write
    outputs and table states for partitions another worker now owns. Writers wait until a
    heartbeat answered within the session timeout (``agents.ownership``).
    """
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.group import JoinGroupRequest

    if getattr(GroupCoordinator._do_heartbeat, "records_time", False):
        return
    original = verified(GroupCoordinator, "_do_heartbeat", "5628cb32b3d29bf4")

    async def _do_heartbeat(self: GroupCoordinator) -> bool:
        sent = time.monotonic()
        last = self.__dict__.get("dpu_heartbeat_ok")
        ok = await original(self)
        if ok:  # also while the group rebalances: the broker still counts it a member
            self.__dict__["dpu_heartbeat_ok"] = sent
        elif (self.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID and last is not None
              and sent - last > self._session_timeout_ms / 1000):
            # Silent past the session timeout, and the broker no longer knows it: the group
            # went on without this worker (``agents.ownership`` ends it).
            self.__dict__["dpu_left_out"] = sent - last
        return ok

    _do_heartbeat.records_time = True  # type: ignore[attr-defined]
    GroupCoordinator._do_heartbeat = _do_heartbeat  # type: ignore[method-assign]


def last_heartbeat(coordinator) -> float | None:
    """``time.monotonic()`` when the last heartbeat answered as a member was sent, if any."""
    return coordinator.__dict__.get("dpu_heartbeat_ok")


def left_out(coordinator) -> float | None:
    """How long this worker was silent when the broker answered it was no member any more
    (None while it is one)."""
    return coordinator.__dict__.get("dpu_left_out")


def back_off_failed_metadata_updates() -> None:
    """Wait ``retry_backoff_ms`` after a metadata update that reached no broker.

    While the broker is down, a producer with records for a partition whose leader is unknown
    asks for a metadata update, and aiokafka's client tries every known node at once and fails
    at once: the sender asks again straight away. Seen in the fault campaign's broker restarts:
    about 3,000 "Unable connect to node" lines a second (36 MB of log in one seed) and a core
    busy for as long as the broker was away. An update that failed now takes the backoff the
    client was configured with (100 ms) before it returns, so the asks come ten times a second.
    """
    from aiokafka.client import AIOKafkaClient

    if getattr(AIOKafkaClient._metadata_update, "backs_off", False):
        return
    original = verified(AIOKafkaClient, "_metadata_update", "a26a9b11cf6afff4")

    async def _metadata_update(self: AIOKafkaClient, cluster_metadata, topics) -> bool:
        updated = await original(self, cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(self._retry_backoff)
        return updated

    _metadata_update.backs_off = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = _metadata_update  # type: ignore[method-assign]


def bounded_fetch_wait(seconds: float) -> None:
    """Let the broker hold the worker's fetch ``seconds`` at most, not Faust's fixed 1.5 s.

    aiokafka keeps one fetch in flight per broker, and leaves out of it the partitions whose
    records are still buffered. When the partitions in it stay quiet, the broker holds it for
    the whole wait, and new records of the partitions left out wait with it: measured in the
    bench's latency phase, the events of its last second became visible 1.5–2.3 s after they
    were sent, once the fleet's other partitions fell silent. A shorter wait costs an empty
    fetch per wait while everything is idle.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread.__dict__["_create_worker_consumer"]
    if getattr(original, "fetch_wait", None) is not None:
        original = original.wrapped
    else:
        verified(AIOKafkaConsumerThread, "_create_worker_consumer", "c179c0bdb9755c3a")

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max(1, round(seconds * 1000))  # read by its start()
        return consumer

    _create_worker_consumer.fetch_wait = seconds  # type: ignore[attr-defined]
    _create_worker_consumer.wrapped = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore
