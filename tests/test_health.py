"""Sensor health's pure logic: statuses, durations, the scan's changes and the CSV series."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from pipeline import health
from pipeline.timeutil import US


def test_status_by_latest_event_and_quiet_period():
    now = 1_000_000 * US
    assert health.status(None, now, 60) == "never_seen"
    assert health.status(now - 60 * US, now, 60) == "ok"  # exactly the quiet period: still ok
    assert health.status(now - 60 * US - 1, now, 60) == "silent"
    assert health.status(now + 3600 * US, now, 60) == "ok"  # ahead of the clock (<= 24 h)


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                          ("1d", 86400)])
def test_durations(text, seconds):
    assert health.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "soon", "1w", "-5m", "1.5h", "9" * 12])
def test_bad_durations(text):
    with pytest.raises(health.BadDuration):
        health.parse_duration(text)


def test_the_scan_counts_statuses_and_reports_changes_only_for_dpus_seen_before():
    from agents.health import HealthWatch

    watch = HealthWatch()
    now = 1_000_000 * US
    quiet = 3600  # the default DPU_SILENT_AFTER_S
    first = [("a", orjson.dumps({"l": now})), ("b", orjson.dumps({"l": None}))]
    assert asyncio.run(watch.scan(first, now)) == []
    assert watch.counts == {"ok": 1, "silent": 0, "never_seen": 1}
    later = now + (quiet + 1) * US
    second = first + [("c", orjson.dumps({"l": None}))]
    changes = asyncio.run(watch.scan(second, later))
    assert [(c["dpu_id"], c["previous"], c["status"]) for c in changes] == [("a", "ok", "silent")]
    assert watch.counts == {"ok": 0, "silent": 1, "never_seen": 2}


class FakePipeline:
    def __init__(self, sent: list) -> None:
        self.sent, self.commands = sent, []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    def publish(self, channel: str, message: bytes) -> None:
        self.commands.append((channel, orjson.loads(message)["dpu_id"]))

    async def execute(self) -> None:
        self.sent.append(self.commands)


class FakeRedis:
    def __init__(self) -> None:
        self.sent: list[list] = []

    def pipeline(self, transaction: bool):
        assert transaction is False
        return FakePipeline(self.sent)


def test_status_changes_are_published_in_order_a_chunk_per_pipeline():
    """A fleet heard from again at once is not one pipeline of thousands of commands, packed
    while every record being counted waits."""
    from agents.health import publish_changes

    redis = FakeRedis()
    changes = [{"dpu_id": f"d{i}", "status": "ok"} for i in range(450)]
    asyncio.run(publish_changes(redis, "p-dpu-status", changes, chunk=200))
    assert [len(commands) for commands in redis.sent] == [200, 200, 50]
    assert [c for commands in redis.sent for c in commands] == \
        [("p-dpu-status", f"d{i}") for i in range(450)]

def test_series_as_csv():
    from pipeline.views.history import _file_name, series_csv

    points = [{"start": "2018-02-24T00:00:00.000Z", "entries": 3, "exits": 1, "count": 22,
               "min": 20, "max": 22}]
    assert series_csv(points) == ("start,entries,exits,count,min,max\n"
                                  "2018-02-24T00:00:00.000Z,3,1,22,20,22\n")
    assert _file_name("Hall 1/ü") == "Hall_1__"
