"""How a counting batch is cut and written (``agents.counting``, ``agents.ownership``), without
Kafka: placements between acknowledged states, records taken back, batches given up."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest

from agents.counting import EVENTS_TOPIC, PLACEMENTS_TOPIC, placement_of, segments
from agents.ownership import Ownership
from tables.faust_tables import BatchStore


def record(topic: str, dpu: str, generation: int = 1):
    return SimpleNamespace(message=SimpleNamespace(topic=topic, key=dpu.encode(), partition=0,
                                                   offset=0, generation_id=generation))


@pytest.mark.parametrize("seed", range(30))
def test_a_placement_shares_no_segment_with_another_record_of_its_dpu(seed):
    rng = random.Random(seed)
    batch = [record(PLACEMENTS_TOPIC if rng.random() < 0.2 else EVENTS_TOPIC,
                    rng.choice("abc")) for _ in range(rng.randrange(1, 40))]
    cut = list(segments(batch, placement_of))
    assert [e for events, _ in cut for e in events] == batch, f"seed {seed}: order kept"
    for events, placed in cut:
        placements = [e for e in events if e.message.topic == PLACEMENTS_TOPIC]
        assert placed == bool(placements), f"seed {seed}"
        for p in placements:
            same_dpu = [e for e in events if e.message.key == p.message.key]
            assert same_dpu == [p], f"seed {seed}: {p.message.key} shares its segment"


def test_a_batch_of_events_is_one_segment():
    batch = [record(EVENTS_TOPIC, d) for d in "abcabc"]
    assert list(segments(batch, placement_of)) == [(batch, False)]


def test_a_record_that_failed_half_way_is_taken_back():
    db = BatchStore()
    first, second = record(EVENTS_TOPIC, "a"), record(EVENTS_TOPIC, "a")
    db.use(first)
    db.store("dpus", "a", {"i": 1})
    db.use(second)
    db.store("dpus", "a", {"i": 2})
    db.store("dpu-days", "a\x1f1\x1f0", [[1]])
    db.undo_record()
    assert db.load("dpus", "a") == {"i": 1}
    assert db._dirty == {("dpus", "a"): first}, "only the first record's write is left"


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
