"""Work-arounds for faust-streaming behaviour that broke the pipeline's guarantees in our tests.

Each is applied once, when the app module is imported, and says what it fixes and how it was seen.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer


def keep_newer_committed_offsets() -> None:
    """Never let a partition's committed offset move backwards in the consumer's bookkeeping.

    When table recovery finishes, Faust reads the group's committed offsets again
    (``perform_seek``). Batches processed while recovery ran may have committed meanwhile, and the
    answer can predate those commits. Faust then believes the older offset, while the offsets
    acknowledged after it are already gone from its ack list: it never commits that partition
    again (seen after a restart with deleted local state: lag stuck at hundreds of records, and
    every record since then read again at the next start). Keeping the newer of the two is safe:
    an offset is only recorded as committed after its batch was processed and its outputs
    flushed.
    """
    original = Consumer.perform_seek
    if getattr(original, "keeps_newer", False):
        return

    async def perform_seek(self: Consumer) -> None:
        before = {tp: offset for tp, offset in self._committed_offset.items()
                  if offset is not None}
        await original(self)
        assigned = self.assignment()
        for tp, offset in before.items():
            now = self._committed_offset.get(tp)
            if tp in assigned and (now is None or offset > now):
                self._committed_offset[tp] = offset

    perform_seek.keeps_newer = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


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
        if low - committed > 1 and in_flight.get(tp, low) >= low:
            stalled[tp] = (committed, low)
    return stalled
