"""The randomized fault campaign: per seed, a disordered fleet with hostile records is published
while a random schedule of faults hits the workers and the services (``tests/campaign.py``);
then every realtime and as-of answer, ``dpu_log``, ``dpu_telemetry``, ``space_count``,
``dpu_rejects`` and the Redis mirror are compared with the definition.

``DPU_CAMPAIGN_SEEDS=N`` runs seeds 1..N (5 by default, as in CI); ``DPU_CAMPAIGN_SEED=K`` runs
seed K alone. It stops and starts the services ``dpu dev up`` runs, like the fault suite.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter

import psycopg
import pytest

from pipeline.dev.services import Kafka, Postgres, Redis
from agents.ownership import EXIT_LEFT_OUT
from pipeline.dev.worker_process import WorkerProcess
from pipeline.timeutil import iso
from tests import campaign, reference
from tests.integration.conftest import CAMPAIGN, counters, poll
from tests.integration.test_faults import Expected, dev_service, status, uncommitted, verify

OUTAGE_S = 5
"""How long PostgreSQL or Redis stays down."""


def seeds() -> list[int]:
    if os.environ.get("DPU_CAMPAIGN_SEED"):
        return [int(os.environ["DPU_CAMPAIGN_SEED"])]
    return list(range(1, int(os.environ.get("DPU_CAMPAIGN_SEEDS", "5")) + 1))


def rerun(seed: int) -> str:
    return f"rerun it alone with DPU_CAMPAIGN_SEED={seed} scripts/test " \
           "tests/integration/test_campaign.py"


class Runner:
    """Carries out a plan: publishes, applies faults, and restarts what a supervisor would."""

    def __init__(self, pipeline, plan: campaign.Plan) -> None:
        self.pipeline = pipeline
        self.plan = plan
        self.live: list[WorkerProcess] = [pipeline.worker]
        self.down: list[WorkerProcess] = []
        """Workers killed or stopped, to start again (as a supervisor would) at the next step."""
        self.paused: list[tuple[WorkerProcess, float]] = []
        """Workers stopped with SIGSTOP, and when to let them go on."""
        self.outage: tuple[object, float] | None = None
        """A service stopped, and when to start it again."""
        self.joined = 0
        self.left_out = 0
        """Workers that ended themselves, left out of their group (after a SIGSTOP)."""
        self.in_flight = 0
        self.applied: Counter = Counter()

    # -- steps -------------------------------------------------------------------------------

    def run(self) -> None:
        for step in self.plan.steps:
            self.check_alive()
            self.restart_down()
            if isinstance(step, campaign.Publish):
                self.publish(step)
                self.end_pauses_and_outages()
            else:
                self.fault(step)
        self.end_pauses_and_outages(now=True)
        self.restart_down()

    def publish(self, step: campaign.Publish) -> None:
        self.pipeline.publish(step.records)
        for topic, items in campaign.raw_records(step.hostile).items():
            self.pipeline.send_raw(topic, items)

    def fault(self, fault: campaign.Fault) -> None:
        kind = fault.kind
        self.applied[kind] += 1
        worker = self.live[int(fault.pick * len(self.live)) % len(self.live)] if self.live \
            else None
        if worker is not None and kind != "kill -9":
            self.resume(worker)  # a paused worker runs again first: SIGTERM waits for that
        if worker is not None:
            self.in_flight += uncommitted(worker)
        if kind == "kill -9":
            self.paused = [(w, t) for w, t in self.paused if w is not worker]
            worker.kill()
            self.take_down(worker)
        elif kind == "SIGTERM":
            worker.stop()
            self.take_down(worker)
        elif kind == "SIGSTOP past the session timeout":
            # Paused while the records after it are published: the group hands its partitions
            # to the others (or back to it), and it goes on where it was when let go.
            if len(self.live) == 1:
                self.join()
            os.killpg(worker.proc.pid, signal.SIGSTOP)
            resume = time.monotonic() + self.pipeline.settings.session_timeout_s + 3
            self.paused.append((worker, resume))
        elif kind == "worker joins":
            self.join()
        elif kind == "worker leaves":
            if len(self.live) == 1:
                self.join()
            worker.stop()
            self.live.remove(worker)
        elif kind == "local stores deleted":
            worker.kill()
            shutil.rmtree(worker.settings.store_dir, ignore_errors=True)
            self.take_down(worker)
        elif kind in ("PostgreSQL stopped", "Redis stopped"):
            if self.outage is None:
                service = dev_service(Postgres if kind.startswith("Postgre") else Redis)
                service.stop()
                self.outage = (service, time.monotonic() + OUTAGE_S)
        elif kind == "broker restarted":
            kafka = dev_service(Kafka)
            kafka.stop()
            kafka.start()
        else:  # pragma: no cover - a new kind without a way to apply it
            raise AssertionError(f"no way to apply {kind!r}")

    # -- the supervisor's part -----------------------------------------------------------------

    def join(self) -> WorkerProcess:
        self.joined += 1
        worker = self.pipeline.add_worker(f"joined-{self.joined}")
        self.live.append(worker)
        return worker

    def take_down(self, worker: WorkerProcess) -> None:
        self.live.remove(worker)
        self.down.append(worker)

    def restart_down(self) -> None:
        for worker in self.down:
            new = WorkerProcess(worker.settings, worker.log_path).start()
            self.live.append(new)
            others = self.pipeline.others
            if worker is self.pipeline.worker:
                self.pipeline.worker = new
            elif worker in others:
                others[others.index(worker)] = new
        self.down = []

    def resume(self, worker: WorkerProcess) -> None:
        if any(w is worker for w, _ in self.paused):
            os.killpg(worker.proc.pid, signal.SIGCONT)
            self.paused = [(w, t) for w, t in self.paused if w is not worker]

    def end_pauses_and_outages(self, now: bool = False) -> None:
        for worker, resume in self.paused:
            time.sleep(0 if now else max(0.0, resume - time.monotonic()))
            os.killpg(worker.proc.pid, signal.SIGCONT)
        self.paused = []
        if self.outage is not None:
            service, until = self.outage
            time.sleep(0 if now else max(0.0, until - time.monotonic()))
            service.start()
            self.outage = None

    def check_alive(self) -> None:
        """A worker the group went on without exits (75, ``agents.ownership``) and is started
        again like any stopped one; any other exit fails the seed."""
        for worker in list(self.live):
            code = worker.proc.poll()
            if code == EXIT_LEFT_OUT:
                self.left_out += 1
                self.take_down(worker)
            elif code is not None:
                pytest.fail(f"seed {self.plan.seed}: a worker exited by itself ({code}); see "
                            f"{worker.log_path}; {rerun(self.plan.seed)}", pytrace=False)


def check_rejects(pipeline, plan: campaign.Plan) -> list[tuple[str, str]]:
    """Each hostile record is in dpu_rejects with its reason, and nothing else is. Returns
    (record, where it ended up) for the report."""
    rows = pipeline.sql("SELECT source_topic, raw, reason FROM dpu_rejects")
    prefix = pipeline.settings.topic_prefix
    outcome = []
    for h in plan.hostile:
        found = [reason for topic, raw, reason in rows
                 if topic == prefix + h.topic and bytes(raw) == h.raw]
        assert len(found) == 1 and h.reason in found[0], (h.name, found)
        outcome.append((h.name, f"dpu_rejects: {found[0]}"))
    assert len(rows) == len(plan.hostile), "a valid record was rejected"
    return outcome


def check_as_of(pipeline, plan: campaign.Plan, workers: list[WorkerProcess]) -> int:
    """Random count(S, T) answers from random workers equal the definition."""
    sc = plan.scenario
    index = reference.Index(sc.events, sc.placements, sc.resets)
    rng = random.Random(plan.seed)
    instants = [e.ts for e in rng.sample(sc.events, 20)] + [r.at for r in sc.resets[:5]]
    for at in instants:
        space = rng.choice(sc.spaces)
        worker = rng.choice(workers)
        code, body = worker.get_json(f"/spaces/{space}/count?at={iso(at)}")
        assert code == 200 and body["count"] == index.count(space, at), (space, iso(at), body)
    return len(instants)


@pytest.mark.settings(session_timeout_s=6)
@pytest.mark.parametrize("seed", seeds())
def test_campaign(pipeline, seed):
    plan = campaign.plan(seed)
    sc = plan.scenario
    exp = Expected.of(sc)
    hostile_events = sum(1 for h in plan.hostile if h.topic == campaign.EVENTS)
    exp = Expected(exp.realtime, exp.dpus, exp.space_sums, exp.log_rows + hostile_events,
                   exp.telemetry_rows)
    runner = Runner(pipeline, plan)
    try:
        runner.run()
        time.sleep(2)  # a worker let go last learns from its next heartbeat that it is out
        runner.check_alive()
        runner.restart_down()
        for worker in runner.live:
            worker.wait_ready(timeout=180)
        poll(lambda: all(status(w).get("ready") for w in runner.live), timeout=120,
             what="every worker ready")
        faults = ", ".join(f"{n} {k}" for k, n in sorted(runner.applied.items()))
        verify(pipeline, sc, exp, runner.live,
               (f"campaign seed {seed}", faults, runner.in_flight))
        outcome = check_rejects(pipeline, plan)
        probes = check_as_of(pipeline, plan, runner.live)
    except (AssertionError, psycopg.Error, pytest.fail.Exception) as exc:
        states = {str(w.log_path.name): {**{k: status(w).get(k) for k in
                                            ("ready", "assigned", "consumer_lag")},
                                         "counters": counters(w)} for w in runner.live}
        pytest.fail(f"seed {seed} failed ({type(exc).__name__}: {exc}); faults in order: "
                    f"{', '.join(plan.faults)}; workers then: {states}; {rerun(seed)}",
                    pytrace=False)
    finally:
        runner.end_pauses_and_outages(now=True)
        pipeline.others = [w for w in runner.live + runner.down if w is not pipeline.worker]
    CAMPAIGN["seeds"].append(seed)
    CAMPAIGN["faults"].update(runner.applied)
    CAMPAIGN["left_out"] += runner.left_out
    CAMPAIGN["events"] += len(sc.events)
    CAMPAIGN["as_of"] += probes
    for name, where in outcome:
        CAMPAIGN["hostile"][name] = where
