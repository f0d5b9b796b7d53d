"""dpu replay: all state rebuilt from the topics, identical counts and tables."""

from __future__ import annotations

import asyncio
import time

from pipeline.dev.worker_process import WorkerProcess
from pipeline.files import read_events
from pipeline.models import Placement, SpaceSign
from pipeline.timeutil import parse_ts
from pipeline.topics import admin_client
from tests.integration.conftest import poll
from tests.integration.test_end_to_end import FLOORPLAN, START

TABLES = ("dpu_log", "dpu_telemetry", "space_resets", "dpu_location", "dpu_rejects")
PROBES = ("2018-02-25T12:00:00Z", "2018-02-26T16:10:00Z", "2018-02-28T00:00:00Z",
          "2018-03-01T09:30:00Z", "2030-01-01T00:00:00Z")


def snapshot(pipeline) -> dict:
    rows = {t: pipeline.sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}
    rows["deltas"] = pipeline.sql("SELECT space_id, sum(delta)::int, sum(entries)::int "
                                  "FROM space_count GROUP BY 1 ORDER BY 1")
    rows["hourly"] = pipeline.sql("SELECT sum(delta)::int, sum(entries)::int, sum(exits)::int "
                                  "FROM space_count_hourly")
    rows["realtime"] = {s: pipeline.count(s) for s in ("A", "B", "C")}
    rows["as_of"] = {(s, at): pipeline.get(f"/spaces/{s}/count?at={at}")[1]["count"]
                     for s in ("A", "B", "C") for at in PROBES}
    rows["telemetry"] = pipeline.sql("SELECT dpu_id, doorway_id, count(*) FROM dpu_telemetry "
                                     "GROUP BY 1, 2 ORDER BY 1, 2")
    return rows


def settled(pipeline) -> dict:
    """A snapshot that two looks a second apart agree on (the reconciler may still be busy)."""
    def stable():
        first = snapshot(pipeline)
        time.sleep(1)
        return first if snapshot(pipeline) == first else None
    return poll(stable, timeout=60, what="a settled snapshot")


def counted_sample(pipeline, sample_csv) -> dict:
    """The sample with a late move and a reject, counted: the settled snapshot."""
    events, _ = read_events(str(sample_csv))
    late_move = Placement("283", parse_ts("2018-02-28T00:00:00Z"), (SpaceSign("C", 1),), "Y")
    pipeline.publish(FLOORPLAN + START + events + [late_move])
    pipeline.send_raw("dpu-events", [(b"283", b"garbage")])
    pipeline.wait()
    return settled(pipeline)


def test_replay_rebuilds_identical_counts_and_tables(pipeline, sample_csv):
    before = counted_sample(pipeline, sample_csv)
    assert before["realtime"]["C"] == -6 and before["dpu_rejects"] == 1

    refused = pipeline.cli("replay", check=False)
    assert refused.returncode == 1 and "running" in refused.stderr

    pipeline.worker.stop()
    out = pipeline.cli("replay")
    assert "deleting" in out.stderr
    pipeline.worker = WorkerProcess(pipeline.settings, pipeline.worker.log_path).start()
    pipeline.worker.wait_ready(timeout=180)
    pipeline.wait()
    assert settled(pipeline) == before


def test_replay_from_dpu_log_when_the_events_topic_lost_its_records(pipeline, sample_csv):
    before = counted_sample(pipeline, sample_csv)
    pipeline.worker.stop()

    async def lose_the_events_topic() -> None:  # as retention or a broker loss would
        admin = await admin_client(pipeline.settings)
        try:
            await admin.delete_topics([pipeline.settings.topic("dpu-events")])
        finally:
            await admin.close()
    asyncio.run(lose_the_events_topic())
    refused = pipeline.cli("replay", check=False)
    assert refused.returncode == 1 and "no longer holds 564 records" in refused.stderr \
        and "--from-log" in refused.stderr, refused.stderr

    out = pipeline.cli("replay", "--from-log")
    assert f"published {before['dpu_log']} event records again" in out.stderr, out.stderr
    pipeline.worker = WorkerProcess(pipeline.settings, pipeline.worker.log_path).start()
    pipeline.worker.wait_ready(timeout=180)
    pipeline.wait()
    assert settled(pipeline) == before


def test_replay_refuses_when_the_placements_topic_lost_records(pipeline, sample_csv):
    counted_sample(pipeline, sample_csv)
    pipeline.worker.stop()

    async def retention_took_the_first_placement() -> None:
        from aiokafka import TopicPartition
        from aiokafka.admin import RecordsToDelete

        from aiokafka import AIOKafkaConsumer

        from pipeline.kafka_auth import client_options

        topic = pipeline.settings.topic("dpu-placements")
        consumer = AIOKafkaConsumer(**client_options(pipeline.settings))
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(
                pipeline.settings.partitions)])
        finally:
            await consumer.stop()
        admin = await admin_client(pipeline.settings)
        try:
            await admin.delete_records({tp: RecordsToDelete(1) for tp, end in ends.items()
                                        if end})
        finally:
            await admin.close()
    asyncio.run(retention_took_the_first_placement())
    refused = pipeline.cli("replay", check=False)
    assert refused.returncode == 1, refused.stderr
    assert "dpu-placements topic no longer holds its first records" in refused.stderr, \
        refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_a_worker_whose_stores_are_ahead_of_the_changelogs_restores_them(pipeline, sample_csv):
    """`dpu replay` run with another DPU_STATE_DIR leaves this worker's stores ahead of the new
    changelogs: the worker starts, says so in one line, and recounts to the same answers."""
    before = counted_sample(pipeline, sample_csv)
    pipeline.worker.stop()  # a clean stop: its stores are kept
    pipeline.cli("replay", settings=pipeline.settings.with_(state_dir=pipeline.tmp / "other"))
    pipeline.worker = WorkerProcess(pipeline.settings, pipeline.worker.log_path).start()
    pipeline.worker.wait_ready(timeout=180)
    log = pipeline.worker.log_path.read_text()
    assert log.count("are ahead of their changelogs") == 1, log[-2000:]
    pipeline.wait()
    assert settled(pipeline) == before
