"""Counting batches are paced (``Subscription.batches``, ``DPU_COUNT_BATCH_S``): at a low rate the
records of one interval share a batch; under a backlog a batch starts at once."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.bulk_input import Subscription
from pipeline.settings import Settings, SettingsError
from tests.bulk_fakes import fake_app, offsets, records


def subscription() -> Subscription:
    return Subscription(fake_app(), "count-dpus", ["events"], max_buffered=1000)


def test_a_batch_waits_out_the_interval_after_the_one_before_started():
    async def scenario():
        sub = subscription()
        batches = sub.batches(max_records=100, within_s=5.0)
        await sub.put(records(1))
        first = await asyncio.wait_for(anext(batches), 1)  # the first batch waits for nothing
        await sub.put(records(2))
        next_batch = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.05)
        assert not next_batch.done()  # 5 s have not passed since the first batch started
        await sub.put(records(3, 4))
        await sub.put(records(5, 6))  # 6 records: still fewer than max_records
        assert not next_batch.done()
        next_batch.cancel()
        return offsets(first)

    assert asyncio.run(scenario()) == [1]


def test_a_full_batch_starts_without_waiting_out_the_interval():
    async def scenario():
        sub = subscription()
        batches = sub.batches(max_records=3, within_s=60.0)
        await sub.put(records(1))
        first = await asyncio.wait_for(anext(batches), 1)
        second = asyncio.ensure_future(anext(batches))
        await sub.put(records(2))
        await sub.put(records(3, 4, 5))  # 4 records waiting: more than max_records
        return offsets(first), offsets(await asyncio.wait_for(second, 1))

    # started long before its 60 s; whole fetched lists, so it may hold more than 3
    assert asyncio.run(scenario()) == ([1], [2, 3, 4, 5])


def test_the_batch_after_the_interval_holds_every_record_that_arrived_in_it():
    async def scenario():
        sub = subscription()
        batches = sub.batches(max_records=100, within_s=1.0)
        await sub.put(records(1))
        await asyncio.wait_for(anext(batches), 1)
        second = asyncio.ensure_future(anext(batches))
        for offset in range(2, 7):
            await sub.put(records(offset))
            await asyncio.sleep(0.01)
        return offsets(await asyncio.wait_for(second, 5))

    # unpaced, the batch would have held record 2 alone
    assert asyncio.run(scenario()) == [2, 3, 4, 5, 6]


def test_the_default_paces_and_reaches_child_workers():
    assert Settings().count_batch_s == 0.01
    custom = Settings.from_env({"DPU_COUNT_BATCH_S": "0"})
    assert Settings.from_env(custom.to_env()).count_batch_s == 0.0


@pytest.mark.parametrize("raw", ["-0.01", "nan", "inf"])
def test_an_interval_below_zero_or_not_finite_is_refused_with_its_variable_named(raw):
    with pytest.raises(SettingsError, match="DPU_COUNT_BATCH_S"):
        Settings.from_env({"DPU_COUNT_BATCH_S": raw})
