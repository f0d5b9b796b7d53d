"""How a counting batch is cut and written (``agents.counting``, ``agents.ownership``), without
Kafka: placements between acknowledged states, records taken back, batches given up."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest

from agents.counting import EVENTS_TOPIC, PLACEMENTS_TOPIC, Outbox, Partitioner, \
    count_segment, placement_of, segments
from agents.ownership import Ownership
from tables.dpu_state import DpuState
from tests.simulator import DictStore


def record(topic: str, dpu: str, generation: int = 1, offset: int = 0, value: bytes = b""):
    return SimpleNamespace(topic=topic, key=dpu.encode(), partition=0, offset=offset,
                           generation_id=generation, value=value, timestamp=1.0)


@pytest.mark.parametrize("seed", range(30))
def test_a_placement_shares_no_segment_with_another_record_of_its_dpu(seed):
    rng = random.Random(seed)
    batch = [record(PLACEMENTS_TOPIC if rng.random() < 0.2 else EVENTS_TOPIC,
                    rng.choice("abc")) for _ in range(rng.randrange(1, 40))]
    cut = list(segments(batch, placement_of))
    assert [e for events, _ in cut for e in events] == batch, f"seed {seed}: order kept"
    for events, placed in cut:
        placements = [e for e in events if e.topic == PLACEMENTS_TOPIC]
        assert placed == bool(placements), f"seed {seed}"
        for p in placements:
            same_dpu = [e for e in events if e.key == p.key]
            assert same_dpu == [p], f"seed {seed}: {p.key} shares its segment"


def test_a_batch_of_events_is_one_segment():
    batch = [record(EVENTS_TOPIC, d) for d in "abcabc"]
    assert list(segments(batch, placement_of)) == [(batch, False)]


class CountingStore:
    """Decoded values kept and changed in place, written only at the end, as ``TableCache``."""

    def __init__(self) -> None:
        self.tables, self.values, self.discarded = DictStore(), {}, 0

    def use(self, partition: int) -> None:
        pass

    def load(self, table: str, key: str):
        if (table, key) not in self.values:
            self.values[(table, key)] = self.tables.load(table, key)
        return self.values[(table, key)]

    def store(self, table: str, key: str, value) -> None:
        self.values[(table, key)] = value

    def discard(self) -> None:
        self.discarded += 1
        self.values.clear()


def test_a_record_that_fails_is_filed_and_its_segment_counted_again_without_it():
    """A failure half-way leaves its changes in the state objects: the segment is counted
    again from the tables without that record, which alone becomes a dead letter."""
    db, outbox = CountingStore(), Outbox(Partitioner(4))
    counted = []

    def handle(db, outbox, message, now):
        if message.offset == 2:
            raise OverflowError("date value out of range")
        state = db.load("dpus", "a")
        state = state if state is not None else DpuState("a")
        state.ins += 1  # in place, before it fails or not
        db.store("dpus", "a", state)
        counted.append(message.offset)

    records = [record(EVENTS_TOPIC, "a", offset=i, value=b"{}") for i in range(4)]
    count_segment(db, outbox, handle, records, now=0)
    assert db.discarded == 1 and counted == [0, 1, 0, 1, 3]
    assert db.load("dpus", "a").ins == 3, "each record that did not fail counted once"
    assert [(m.offset, reason) for m, reason in outbox.dead] == [
        (2, "could not be counted (OverflowError: date value out of range)")]
    assert len(outbox.groups[("dpu-telemetry", 0)]) == 4, "every record logged once"


class FakeApp:
    def __init__(self) -> None:
        self.rebalancing = False
        self.consumer_generation_id = 1


def test_a_batch_taken_before_a_rebalance_is_given_up():
    app = FakeApp()
    owner = Ownership(app, session_timeout_s=6)
    batch = [record(EVENTS_TOPIC, "a", generation=1)]
    assert asyncio.run(owner.hold(batch)) is True
    app.consumer_generation_id = 2
    assert asyncio.run(owner.hold(batch)) is False
    app.consumer_generation_id, app.rebalancing = 1, True
    assert asyncio.run(owner.hold(batch)) is False


def test_writes_wait_for_a_heartbeat_within_the_session_timeout(monkeypatch):
    """A worker paused past the session timeout writes nothing until a heartbeat answers; if
    the answer is that it left the group, the batch is given up."""
    app = FakeApp()
    coordinator = SimpleNamespace(generation=1)
    owner = Ownership(app, session_timeout_s=6)
    monkeypatch.setattr(owner, "_coordinator", lambda: coordinator)
    import time
    coordinator.__dict__["dpu_heartbeat_ok"] = time.monotonic() - 30  # paused 30 s

    async def scenario():
        holding = asyncio.ensure_future(owner.hold([record(EVENTS_TOPIC, "a")]))
        await asyncio.sleep(0.2)
        assert not holding.done(), "wrote without a heartbeat within the session timeout"
        coordinator.generation = -1  # the heartbeat: unknown member, generation reset
        return await asyncio.wait_for(holding, 2)

    assert asyncio.run(scenario()) is False
    coordinator.generation = 1
    coordinator.__dict__["dpu_heartbeat_ok"] = time.monotonic()
    assert asyncio.run(owner.hold([record(EVENTS_TOPIC, "a")])) is True
