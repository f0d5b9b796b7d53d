"""The fault suite: kill -9, lost local state, workers joining and leaving, and outages of
PostgreSQL, Redis and the broker, against the real services.

Every scenario publishes a disordered fleet (late placements and resets, duplicates), breaks
something while the worker counts it, and ends by comparing every count and table with the
definition (``tests/reference.py``). Each adds a row to the fault table printed after the run.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass

import pytest

from pipeline.dev.services import Kafka, Postgres, Redis, Service
from pipeline.dev.worker_process import WorkerProcess
from pipeline.settings import Settings
from tests import reference, scenarios
from tests.integration.conftest import FAULT_TABLE, counters, poll

N_EVENTS = 4000
OUTAGE_S = 30
"""How long PostgreSQL and Redis stay down (issue #4)."""


@dataclass(frozen=True)
class Expected:
    """What the definition says the pipeline must end with, for a scenario."""

    realtime: dict[str, int]
    dpus: dict[str, tuple[int, int]]
    """(ins, outs) per DPU: its events counted once each."""
    space_sums: dict[str, int]
    """Sum of ``space_count.delta`` per space: every counted event once, as finally attributed."""
    log_rows: int
    """``dpu_log``: one row per record on the events topic, duplicates included."""
    telemetry_rows: int
    """``dpu_telemetry``: one row per counted event."""

    @classmethod
    def of(cls, sc: scenarios.Scenario) -> "Expected":
        seen, counted = set(), []
        for e in sc.events:  # arrival order: the first copy of an event_id counts
            if e.event_id is not None:
                if (e.dpu_id, e.event_id) in seen:
                    continue
                seen.add((e.dpu_id, e.event_id))
            counted.append(e)
        dpus: dict[str, tuple[int, int]] = {}
        sums = {s: 0 for s in sc.spaces}
        for e in counted:
            ins, outs = dpus.get(e.dpu_id, (0, 0))
            dpus[e.dpu_id] = (ins + (e.direction > 0), outs + (e.direction < 0))
            p = reference.placement_at(sc.placements, e.dpu_id, e.ts)
            for s in (p.spaces if p else ()):
                sums[s.space_id] += e.direction * s.direction
        index = reference.Index(sc.events, sc.placements, sc.resets)
        return cls({s: index.count(s, None) for s in sc.spaces}, dpus,
                   {s: v for s, v in sums.items() if v}, len(sc.events), len(counted))


def scenario(seed: int) -> tuple[scenarios.Scenario, Expected]:
    sc = scenarios.build(seed=seed, n_events=N_EVENTS)
    return sc, Expected.of(sc)


def realtime(worker: WorkerProcess, sc: scenarios.Scenario) -> dict[str, int | None]:
    out = {}
    for space in sc.spaces:
        status, body = worker.get_json(f"/spaces/{space}/count")
        out[space] = body["count"] if status == 200 else None
    return out


def status(worker: WorkerProcess) -> dict:
    try:
        code, body = worker.get_json("/status", timeout=5)
    except OSError:
        return {}
    return body if code == 200 else {}


def uncommitted(worker: WorkerProcess) -> int:
    """Records read or readable but not committed yet: the work a fault now would interrupt."""
    return sum(status(worker).get("consumer_lag", {}).values())


def telemetry_rows(pipeline) -> int:
    return pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0]


def verify(pipeline, sc: scenarios.Scenario, exp: Expected, workers: list[WorkerProcess],
           row: tuple[str, str, int] | None = None) -> None:
    """Everything equals the definition. ``row`` (scenario, faults, records in flight) goes to
    the fault table with the events lost and doubled by DPU totals, whatever the outcome."""
    pipeline.wait(timeout=180)
    lost = doubled = 0
    for i, worker in enumerate(workers):
        assert worker.proc.poll() is None, f"a worker died; see {worker.log_path}"
        answers = {}
        for dpu in exp.dpus:
            code, body = worker.get_json(f"/dpus/{dpu}")
            assert code == 200, (dpu, code, body)
            answers[dpu] = (body["ins"], body["outs"])
        if i == 0:
            for dpu, want in exp.dpus.items():
                lost += sum(max(0, w - g) for w, g in zip(want, answers[dpu]))
                doubled += sum(max(0, g - w) for w, g in zip(want, answers[dpu]))
            first = answers
        assert answers == first, f"worker {i} answers DPUs differently from worker 0"
        assert realtime(worker, sc) == exp.realtime, f"realtime counts from worker {i}"
    entry = record(*row, lost, doubled, len(sc.events)) if row else {}
    assert (lost, doubled) == (0, 0), f"{lost} events lost, {doubled} doubled"
    assert pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == exp.log_rows
    assert telemetry_rows(pipeline) == exp.telemetry_rows
    sums = dict(pipeline.sql("SELECT space_id, sum(delta)::int FROM space_count GROUP BY 1 "
                             "HAVING sum(delta) <> 0"))
    assert sums == exp.space_sums
    deadline = time.monotonic() + 30
    while (mirror := pipeline.redis_counts()) != exp.realtime:
        assert time.monotonic() < deadline, "Redis mirror differs: " + str(
            {s: (mirror.get(s), want) for s, want in exp.realtime.items() if mirror.get(s) != want})
        time.sleep(0.2)
    pipeline.assert_history_matches(sc.events, sc.placements, sc.resets)
    entry["all_equal"] = "yes"


def record(name: str, faults: str, in_flight: int, lost: int, doubled: int, events: int) -> dict:
    """A fault-table row; ``all_equal`` turns "yes" once every comparison has passed."""
    entry = {"scenario": name, "faults": faults, "in_flight": in_flight, "events": events,
             "lost": lost, "doubled": doubled, "all_equal": "no"}
    FAULT_TABLE.append(entry)
    return entry


def dev_service(cls: type[Service]) -> Service:
    service = cls(Settings.from_env())  # the services' own URLs, as `dpu dev up` exported them
    if not service.running():
        pytest.fail(f"the outage tests stop and start {service.name} themselves, so it must be "
                    "the one `dpu dev up` runs: start the services with `scripts/test` or "
                    "`eval \"$(.venv/bin/dpu dev up)\"`", pytrace=False)
    return service


@pytest.mark.settings(session_timeout_s=6)
def test_kill_9_mid_batch_mid_flush_and_during_start_up(pipeline):
    sc, exp = scenario(seed=41)
    pipeline.publish(sc.waves[0])
    pipeline.publish(sc.waves[1])
    in_flight = 0

    # 1. While counting: a fifth of the events have reached the telemetry table.
    poll(lambda: telemetry_rows(pipeline) >= exp.telemetry_rows // 5, interval=0.05,
         what="a fifth counted")
    in_flight += uncommitted(pipeline.worker)
    pipeline.worker.kill()
    pipeline.restart().wait_ready(timeout=180)

    # 2. While the sinks hold a batch they have not written. The last wave is published while
    # the sinks are watched: the waves before may all be written by the time the worker is ready.
    last_wave = threading.Thread(target=pipeline.publish, args=(sc.waves[2],))
    last_wave.start()
    try:
        busy = poll(lambda: (s := status(pipeline.worker)).get("sink_backlog") and s,
                    interval=0.02, what="a sink batch pending")
    finally:
        last_wave.join()
    in_flight += sum(busy["consumer_lag"].values())
    pipeline.worker.kill()

    # 3. During start-up: the web view answers, partitions are being assigned and recovered.
    pipeline.restart()
    poll(lambda: status(pipeline.worker) != {} or None, interval=0.05, what="web view up")
    in_flight += uncommitted(pipeline.worker)
    pipeline.worker.kill()
    pipeline.restart().wait_ready(timeout=180)

    verify(pipeline, sc, exp, [pipeline.worker],
           ("kill -9 (mid-batch, mid-flush, start-up)", "3 kills", in_flight))


def test_local_state_deleted_is_restored_from_the_changelogs(pipeline):
    sc, exp = scenario(seed=42)
    pipeline.publish(sc.waves[0])
    pipeline.publish(sc.waves[1])
    pipeline.wait()
    pipeline.worker.stop()
    shutil.rmtree(pipeline.settings.store_dir)
    pipeline.restart().wait_ready(timeout=180)
    # Restored a fetch at a time (pipeline.bulk_restore), not record by record.
    assert counters(pipeline.worker).get("changelog_records_restored", 0) > 0
    pipeline.publish(sc.waves[2])  # counted on top of the restored state
    verify(pipeline, sc, exp, [pipeline.worker],
           ("local table stores deleted", "1 stop + rm -rf state", 0))


@pytest.mark.settings(session_timeout_s=6)
def test_workers_join_and_leave_and_every_worker_answers_right(pipeline):
    sc, exp = scenario(seed=43)
    pipeline.publish(sc.waves[0])
    second = pipeline.add_worker("w2")
    pipeline.publish(sc.waves[1])  # while workers join and partitions move
    second.wait_ready(timeout=180)
    third = pipeline.add_worker("w3")
    third.wait_ready(timeout=180)
    in_flight = uncommitted(pipeline.worker)
    pipeline.worker.stop()  # the first leaves while the rest is published
    pipeline.publish(sc.waves[2])
    third.kill()  # and one more dies without leaving
    in_flight += uncommitted(second)
    pipeline.worker = second
    verify(pipeline, sc, exp, [second], ("3 workers: 2 join, 1 leaves, 1 killed, then 1 joins",
                                         "2 joins, 1 leave, 1 kill, 1 join", in_flight))
    # A fresh worker joins the survivor: both answer every space and DPU (routed to the owner).
    fourth = pipeline.add_worker("w4")
    fourth.wait_ready(timeout=180)
    poll(lambda: status(second).get("ready") and status(fourth).get("ready"),
         what="both workers ready")
    verify(pipeline, sc, exp, [second, fourth])


def outage(pipeline, cls: type[Service], seed: int, name: str) -> None:
    """Stop ``cls`` for OUTAGE_S while the second half of a scenario arrives; verify after."""
    service = dev_service(cls)
    sc, exp = scenario(seed)
    pipeline.publish(sc.waves[0])
    pipeline.wait()
    service.stop()
    started = time.monotonic()
    try:
        pipeline.publish(sc.waves[1])
        pipeline.publish(sc.waves[2])
        # Counting goes on without the sink's service, and /status shows what waits for it.
        poll(lambda: realtime(pipeline.worker, sc) == exp.realtime, timeout=OUTAGE_S,
             what=f"realtime counts right with {service.name} down")
        seen = poll(lambda: (s := status(pipeline.worker)).get("sink_backlog") and any(
            v["failures"] for v in s["sinks"].values()) and s, timeout=OUTAGE_S,
            what="/status showing the sink backlog and failures")
        in_flight = seen["sink_backlog"]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))  # the outage's length
    finally:
        service.start()
    verify(pipeline, sc, exp, [pipeline.worker], (name, "1 outage", in_flight))


def test_postgres_down_for_30_s(pipeline):
    outage(pipeline, Postgres, seed=44, name=f"PostgreSQL stopped {OUTAGE_S} s")


def test_redis_down_for_30_s_and_back_empty(pipeline):
    outage(pipeline, Redis, seed=45, name=f"Redis stopped {OUTAGE_S} s (restarts empty)")


def test_broker_restart_mid_stream(pipeline):
    kafka = dev_service(Kafka)
    sc, exp = scenario(seed=46)
    pipeline.publish(sc.waves[0])
    pipeline.publish(sc.waves[1])
    poll(lambda: telemetry_rows(pipeline) >= exp.telemetry_rows // 4, interval=0.05,
         what="a quarter counted")
    in_flight = uncommitted(pipeline.worker)
    kafka.stop()
    try:
        assert pipeline.worker.proc.poll() is None, "the worker died with the broker"
    finally:
        kafka.start()
    pipeline.publish(sc.waves[2])
    verify(pipeline, sc, exp, [pipeline.worker],
           ("Kafka broker restarted mid-stream", "1 restart", in_flight))
