"""The pipeline end to end: real broker, real Faust worker, PostgreSQL and Redis."""

from __future__ import annotations

from pipeline.files import read_events
from pipeline.models import DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import iso, parse_ts
from tests.integration.conftest import poll

FLOORPLAN = [
    Placement("283", parse_ts("2018-02-01T00:00:00Z"), (SpaceSign("A", 1),), "X"),
    Placement("423", parse_ts("2018-02-01T00:00:00Z"), (SpaceSign("A", 1), SpaceSign("B", -1)), "Z"),
]
START = [Reset("A", parse_ts("2018-02-24T08:45:00Z"), 20),
         Reset("B", parse_ts("2018-02-24T08:45:00Z"), 10)]


def test_sample_data_gives_the_floorplan_counts_everywhere(pipeline, sample_csv):
    events, bad = read_events(str(sample_csv))
    assert bad == [] and len(events) == 563
    pipeline.publish(FLOORPLAN + START)
    pipeline.wait()
    pipeline.publish(events)
    pipeline.wait()

    assert pipeline.count("A") == 31 and pipeline.count("B") == 18
    assert poll(lambda: pipeline.redis_counts() == {"A": 31, "B": 18} or None,
                what="Redis mirror A=31, B=18")
    status, listing = pipeline.get("/spaces")
    assert status == 200
    assert {s["space_id"]: s["count"] for s in listing["spaces"]} == {"A": 31, "B": 18}

    n423 = sum(e.dpu_id == "423" for e in events)
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0] == 563
    assert pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == 563
    assert pipeline.sql("SELECT count(*) FROM space_count")[0][0] == 2 * n423 + (563 - n423)
    assert pipeline.sql("SELECT dpu_id, space_id, direction, \"current\" FROM dpu_location "
                        "ORDER BY 1, 2") == [("283", "A", 1, True), ("423", "A", 1, True),
                                             ("423", "B", -1, True)]
    # The attributions recorded in the history add up to the realtime change of each space.
    assert pipeline.sql("SELECT space_id, sum(delta) FROM space_count GROUP BY 1 ORDER BY 1") == \
        [("A", 11), ("B", 8)]

    # Reconciliation catches up by itself: every row's reconciled count is count(S, its instant).
    pipeline.assert_history_matches(events, FLOORPLAN, START)

    out = pipeline.cli("count", "A")
    assert '"count":31' in out.stdout
    assert pipeline.cli("wait", "--timeout", "30").returncode == 0
    status, body = pipeline.get("/status")
    assert status == 200 and body["caught_up"] is True


def test_invalid_records_are_dead_lettered_and_change_no_count(pipeline):
    pipeline.publish([FLOORPLAN[0], Reset("A", parse_ts("2018-02-24T00:00:00Z"), 5)])
    ok = b'{"dpu_id": "283", "timestamp": "2018-02-25T10:00:00Z", "direction": 1}'
    pipeline.send_raw("dpu-events", [
        (b"283", b"not json at all"),
        (b"283", b'{"dpu_id": "283", "timestamp": "2018-02-25T10:00:00Z", "direction": 0}'),
        (b"283", b'{"dpu_id": "283", "timestamp": "not a time", "direction": 1}'),
        (b"283", b'{"dpu_id": "283", "timestamp": "2999-01-01T00:00:00Z", "direction": 1}'),
        (b"283", b'{"dpu_id": "283", "timestamp": "2018-02-25T10:00:00Z", "direction": 1, '
                 b'"pad": "' + b"x" * 70_000 + b'"}'),
        (b"999", ok),  # key is not the dpu_id
        (b"283", ok),
    ])
    pipeline.send_raw("dpu-placements", [(b"283", b'{"dpu_id": "283", "spaces": []}')])
    pipeline.wait()
    reasons = [r[0] for r in pipeline.sql("SELECT reason FROM dpu_rejects")]
    expected = ["not valid JSON", "direction must be 1 or -1", "unparsable timestamp",
                "ahead of the clock", "exceeds", "record key must equal dpu_id",
                "missing field 'installed_at'"]
    assert len(reasons) == len(expected), reasons
    for fragment in expected:
        assert sum(fragment in r for r in reasons) == 1, (fragment, reasons)
    raw = pipeline.sql("SELECT raw FROM dpu_rejects WHERE reason LIKE 'not valid JSON%%'")[0][0]
    assert bytes(raw) == b"not json at all"
    assert pipeline.count("A") == 6  # the reset's 5 plus the one valid event
    status, body = pipeline.get("/spaces/nowhere/count")
    assert status == 404 and "unknown space" in body["error"]


def test_duplicates_late_resets_and_unplaced_events(pipeline):
    t = parse_ts("2018-02-25T10:00:00Z")
    pipeline.publish(FLOORPLAN)
    events = [
        DpuEvent("283", t + 1_000_000, 1, "id-1"),
        DpuEvent("283", t + 1_000_000, 1, "id-1"),  # same event_id: counts once
        DpuEvent("283", t + 2_000_000, 1),
        DpuEvent("283", t + 2_000_000, 1),          # no event_id: two people, counts twice
        DpuEvent("423", t + 3_000_000, 1),          # into A, out of B
        DpuEvent("777", t + 4_000_000, 1),          # no placement: counts nowhere
    ]
    pipeline.publish(events)
    pipeline.wait()
    assert (pipeline.count("A"), pipeline.count("B")) == (4, -1)
    # A reset that arrives late, at an instant between events: the events after it still count.
    pipeline.publish([Reset("A", t + 1_500_000, 100), Reset("B", t + 3_000_000, 50)])
    pipeline.wait()
    # A: 100 + two events at t+2s + the 423 event; B: the event at exactly the reset is absorbed.
    assert (pipeline.count("A"), pipeline.count("B")) == (103, 50)
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0] == 5
    pipeline.assert_history_matches(events, FLOORPLAN, [Reset("A", t + 1_500_000, 100),
                                                        Reset("B", t + 3_000_000, 50)])


def test_cli_sets_placements_and_resets_and_produces_files(pipeline, tmp_path):
    pipeline.cli("placements", "set", "9", "--doorway", "D", "--space", "S:+1", "--space", "T:-1",
                 "--at", "2020-01-01T00:00:00Z")
    pipeline.cli("spaces", "reset", "S", "--count", "5", "--at", "2020-01-01T00:00:00Z")
    pipeline.cli("wait", "--timeout", "60")
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        f'{{"dpu_id": 9, "timestamp": "2020-01-02T00:00:0{i}Z", "direction": "{d}"}}\n'
        for i, d in enumerate(["1", "1", "-1", "1"])) + "not json\n")
    out = pipeline.cli("produce", str(events))
    assert "published 4 events" in out.stdout and "line 5: not valid JSON" in out.stderr
    pipeline.cli("wait", "--timeout", "60")
    assert (pipeline.count("S"), pipeline.count("T")) == (7, -2)
    bad = pipeline.cli("count", "nowhere", check=False)
    assert bad.returncode == 1 and "unknown space" in bad.stderr and "Traceback" not in bad.stderr


def test_late_placements_reattribute_events_already_counted(pipeline):
    t = parse_ts("2018-03-01T10:00:00Z")
    second = 1_000_000
    pipeline.publish([DpuEvent("283", t + i * second, 1) for i in range(1, 5)]
                     + [DpuEvent("423", t + 5 * second, 1)])
    pipeline.wait()
    assert pipeline.count("A") is None  # no placement yet: no space is known

    pipeline.publish(FLOORPLAN)  # recorded after the fact, valid since February
    pipeline.wait()
    assert (pipeline.count("A"), pipeline.count("B")) == (5, -1)

    # 283 was moved to a door of C at t+3s: its last two crossings were C's.
    pipeline.publish([Placement("283", t + 3 * second, (SpaceSign("C", 1),), "Y")])
    pipeline.wait()
    assert (pipeline.count("A"), pipeline.count("B"), pipeline.count("C")) == (3, -1, 2)

    # ...and taken down at t+2s, before the move: its crossing at t+2s counts nowhere (the move
    # at t+3s still governs the later two).
    pipeline.publish([Placement("283", t + 2 * second, ())])
    pipeline.wait()
    assert (pipeline.count("A"), pipeline.count("B"), pipeline.count("C")) == (2, -1, 2)
    # The database history, corrections included, adds up to the same counts.
    assert dict(pipeline.sql("SELECT space_id, sum(delta)::int FROM space_count GROUP BY 1")) == \
        {"A": 2, "B": -1, "C": 2}
    moves = [Placement("283", t + 3 * second, (SpaceSign("C", 1),), "Y"),
             Placement("283", t + 2 * second, ())]
    pipeline.assert_history_matches(
        [DpuEvent("283", t + i * second, 1) for i in range(1, 5)]
        + [DpuEvent("423", t + 5 * second, 1)], FLOORPLAN + moves, [])
    doors = pipeline.sql("SELECT doorway_id, count(*) FROM dpu_telemetry WHERE dpu_id = '283' "
                         "GROUP BY 1 ORDER BY 1")
    assert doors == [("X", 1), ("Y", 2), (None, 1)]


def test_daily_reset_falls_due_on_the_wall_clock_and_is_an_ordinary_reset(pipeline):
    from datetime import datetime, timedelta, timezone

    from pipeline.timeutil import now_us, to_us

    pipeline.publish([FLOORPLAN[0]])
    now = now_us()
    pipeline.publish([DpuEvent("283", now - 10_000_000 + i, 1) for i in range(3)])
    pipeline.wait()
    assert pipeline.count("A") == 3
    wall = (datetime.now(timezone.utc) + timedelta(seconds=3)).replace(microsecond=0)
    pipeline.cli("spaces", "daily-reset", "A", "--time", wall.strftime("%H:%M:%S"),
                 "--tz", "UTC", "--count", "7")
    poll(lambda: pipeline.count("A") == 7 or None, timeout=30, what="daily reset to 7")
    at = to_us(wall)
    pipeline.wait()  # the realtime count can show the reset before the sink has written it
    assert pipeline.sql("SELECT count FROM space_resets WHERE space_id = 'A' AND at = %s",
                        (wall,)) == [(7,)]
    pipeline.publish([DpuEvent("283", at + 1_000_000, 1), DpuEvent("283", at, 1)])
    pipeline.wait()
    assert pipeline.count("A") == 8  # the event at the reset instant is absorbed
    assert pipeline.get(f"/spaces/A/count?at={iso(at)}")[1]["count"] == 7
    assert pipeline.sql("SELECT local_time::text, tz FROM space_daily_resets") == \
        [(wall.strftime("%H:%M:%S"), "UTC")]


def test_events_from_a_transactional_producer_are_counted_and_committed(pipeline):
    """A transactional producer leaves a commit marker after each transaction: an offset with
    no record. The worker must commit past the markers (it reads them through), while never
    taking the offsets of records it skipped for markers."""
    import asyncio

    import orjson
    from aiokafka import AIOKafkaProducer

    from pipeline.kafka_auth import client_options

    pipeline.publish(FLOORPLAN + START)
    pipeline.wait()
    t0 = parse_ts("2018-02-24T09:00:00Z")
    events = [DpuEvent("283", t0 + i * 1_000_000, 1, None) for i in range(60)]

    async def send() -> None:
        producer = AIOKafkaProducer(**client_options(pipeline.settings),
                                    transactional_id=f"{pipeline.schema}-tx")
        await producer.start()
        try:
            topic = pipeline.settings.topic("dpu-events")
            for i, e in enumerate(events):
                if i < 30 or i == 30:  # 30 transactions of one record, then one of 30
                    await producer.begin_transaction()
                await producer.send(topic, orjson.dumps(e.to_json()), key=b"283")
                if i < 30 or i == len(events) - 1:
                    await producer.commit_transaction()
        finally:
            await producer.stop()

    asyncio.run(send())
    pipeline.wait(timeout=120)
    assert pipeline.count("A") == 20 + 60
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0] == 60
