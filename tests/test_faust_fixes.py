"""Faust work-arounds that can be exercised without a broker (pipeline.faust_fixes)."""

import asyncio
from types import SimpleNamespace

from faust.transport.producer import ProducerBuffer

from pipeline.faust_fixes import flush_until_sent


async def _poll(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_flush_waits_for_the_message_taken_off_the_buffer():
    """A message Faust took off the buffer but whose send still waits (the Kafka client's batch
    for its partition is full) keeps the flush waiting: the buffer is empty, not yet sent."""
    flush_until_sent()

    async def scenario() -> None:
        handed_over, batch_drained = [], asyncio.Event()

        class FullPartition:
            async def publish_message(self, fut, wait=False):
                await batch_drained.wait()
                handed_over.append(fut)

        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        await buffer.start()
        try:
            message = SimpleNamespace(message=SimpleNamespace(channel=FullPartition()))
            buffer.put(message)
            await _poll(lambda: buffer.size == 0)  # taken off the buffer, in transit
            flushing = asyncio.ensure_future(buffer.flush())
            # Faust's own flush returns within 0.1 s here; this one must still be waiting.
            done, _ = await asyncio.wait([flushing], timeout=0.5)
            assert not done, "flush returned with a message still in transit"
            batch_drained.set()
            await asyncio.wait_for(flushing, timeout=5)
            assert handed_over == [message]
        finally:
            await buffer.stop()

    asyncio.run(scenario())


def test_a_fix_refuses_a_method_other_than_the_one_it_was_written_against():
    import pytest

    from pipeline.faust_fixes import FaustChanged, fingerprint, verified

    class Consumer:
        def _new_offset(self, tp):
            return None

    assert verified(Consumer, "_new_offset", fingerprint(Consumer._new_offset))
    with pytest.raises(FaustChanged, match="written against .*_new_offset.*pinned versions"):
        verified(Consumer, "_new_offset", "0" * 16)


def test_every_fix_fits_the_installed_faust_and_aiokafka():
    import pipeline.app  # noqa: F401  (applies every fix; each verifies what it replaces)
    from pipeline.faust_fixes import verify_relied_on

    verify_relied_on()


def test_a_metadata_update_that_reaches_no_broker_backs_off():
    """With no broker answering, aiokafka asked for metadata again at once, thousands of times
    a second; with the fix each failed ask takes the client's retry backoff."""
    import asyncio

    from aiokafka.client import AIOKafkaClient

    import pipeline.app  # noqa: F401  (applies the fixes)

    async def failed_updates(seconds: float) -> int:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=100)
        client._conns = {}  # one known node, which does not answer
        client.cluster._brokers = {0: type("Broker", (), {"nodeId": 0})()}

        async def no_connection(node_id, *args, **kwargs):
            return None
        client._get_conn = no_connection
        loop = asyncio.get_running_loop()
        deadline, n = loop.time() + seconds, 0
        while loop.time() < deadline:
            assert await client._metadata_update(client.cluster, set()) is False
            n += 1
        return n

    assert asyncio.run(failed_updates(0.5)) <= 6  # about 5 at 100 ms each, not thousands


def test_the_worker_consumer_fetches_with_the_configured_wait():
    """Faust creates its consumer with a fixed 1.5 s fetch wait; a partition left out of the
    fetch in flight waited that long behind quiet ones."""
    from pipeline.app import app, cfg

    async def created_wait() -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    assert cfg.fetch_max_wait_s < 1.5
    assert asyncio.run(created_wait()) == round(cfg.fetch_max_wait_s * 1000)
