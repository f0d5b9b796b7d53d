"""A batch is acknowledged only once its agent applied it (``agents.batching``), on a real Faust
stream. Faust's own ``take_events`` acknowledges in a ``finally``: an exception on record 3 of 5
acknowledged all 5, and the next commit would pass records never applied."""

from __future__ import annotations

import asyncio
import gc

import faust
import pytest

from agents.batching import applied_batches

app = faust.App("test-batching", store="memory://", broker="kafka://127.0.0.1:1")
topic = app.topic("batches", value_serializer="raw")
state: dict = {"fail_on": None, "seen": [], "hang": None}


@app.agent(topic)
async def applies(stream):
    async for batch in applied_batches(stream, 5, within=0.2):
        for i, event in enumerate(batch):
            state["seen"].append(event.value)
            if state["fail_on"] == i:
                raise RuntimeError(f"record {i + 1} of {len(batch)}")
            if state["hang"] is not None and i == state["hang"]:
                await asyncio.sleep(3600)  # a flush that waits for a database that is down
        batch.applied()


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _run(fail_on=None, hang=None, cancel=False) -> list[bool]:
    state.update(fail_on=fail_on, seen=[], hang=hang)

    async def scenario() -> list[bool]:
        async with applies.test_context() as agent:
            events = [await agent.put(b"v%d" % i, key=b"k", wait=False) for i in range(5)]
            await _until(lambda: len(state["seen"]) >= (3 if fail_on is not None or hang
                                                        is not None else 5))
            if cancel:  # as when the worker stops mid-flush
                for actor in list(agent._actors):
                    actor.actor_task.cancel()
            await asyncio.sleep(0.5)  # past the batch window
        # The agent stopped: a generator left by an exception or a cancellation is closed by
        # now (at the latest when collected), and with it take_events' acknowledgements done.
        gc.collect()
        await asyncio.sleep(0.1)
        return [e.message.acked for e in events]

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_applied_batch_is_acknowledged():
    assert _run() == [True] * 5


def test_an_exception_on_record_3_of_5_leaves_all_5_unacknowledged():
    assert _run(fail_on=2) == [False] * 5


@pytest.mark.timeout(60)
def test_a_batch_cancelled_mid_flush_is_left_unacknowledged():
    assert _run(hang=2, cancel=True) == [False] * 5
