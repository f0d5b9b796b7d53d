"""``BulkInput.deliver_now``: a fetched partition's records handed to every subscriber of its
topic at once, tracked once each, or, when a subscriber is full, not at all (the drain loop then
waits for room with ``deliver``)."""

from __future__ import annotations

import asyncio

from pipeline.bulk_input import BulkInput
from tests.bulk_fakes import fake_app, offsets, records


class FakeConsumer:
    def __init__(self) -> None:
        self.tracked: list[int] = []

    def track_message(self, message) -> None:
        self.tracked.append(message.offset)


def two_readers_of_events(max_buffered: int = 100):
    bulk = BulkInput(fake_app())
    counting = bulk.subscribe("count-dpus", ["events", "placements"], max_buffered)
    raw_log = bulk.subscribe("sink-log", ["events"], max_buffered)
    return bulk, counting, raw_log


async def first_batch(sub) -> list[int]:
    return offsets(await asyncio.wait_for(anext(sub.batches(max_records=100, within_s=0)), 1))


def test_each_subscriber_of_the_topic_gets_the_records_at_once_tracked_once():
    async def scenario():
        bulk, counting, raw_log = two_readers_of_events()
        consumer = FakeConsumer()
        messages = records(5, 6, 7)
        assert bulk.deliver_now(consumer, messages) is True
        return consumer.tracked, [m.refcount for m in messages], \
            await first_batch(counting), await first_batch(raw_log)

    tracked, refcounts, counted, logged = asyncio.run(scenario())
    assert tracked == [5, 6, 7]
    assert refcounts == [2, 2, 2]  # acknowledged once by each reader
    assert counted == logged == [5, 6, 7]


def test_a_topic_read_by_one_subscriber_goes_to_that_one_only():
    async def scenario():
        bulk, counting, raw_log = two_readers_of_events()
        messages = records(1, topic="placements")
        assert bulk.deliver_now(FakeConsumer(), messages)
        return messages[0].refcount, counting._buffered, raw_log._buffered

    assert asyncio.run(scenario()) == (1, 1, 0)


def test_nothing_is_handed_or_tracked_while_a_subscriber_is_full():
    async def scenario():
        bulk, counting, raw_log = two_readers_of_events(max_buffered=3)
        raw_log.put_nowait(records(1, 2, 3))  # the raw log's reader is behind
        consumer = FakeConsumer()
        handed = bulk.deliver_now(consumer, records(4))
        return handed, consumer.tracked, counting._buffered, raw_log._buffered

    assert asyncio.run(scenario()) == (False, [], 0, 3)


def test_deliver_waits_for_room_then_hands_the_records_over():
    async def scenario():
        bulk, counting, raw_log = two_readers_of_events(max_buffered=3)
        raw_log.put_nowait(records(1, 2, 3))
        handed = asyncio.ensure_future(bulk.deliver(FakeConsumer(), records(4)))
        await asyncio.sleep(0.01)
        waiting = not handed.done()
        taken = await first_batch(raw_log)  # the reader takes its records: room again
        await asyncio.wait_for(handed, 1)
        return waiting, taken, await first_batch(raw_log)

    assert asyncio.run(scenario()) == (True, [1, 2, 3], [4])
