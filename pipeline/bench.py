"""``dpu bench``: measured figures of the pipeline on the local services (SPEC §8).

Everything runs against the real broker, database and a real worker process, under a prefix and a
database of its own; each figure is measured in this run, none is assumed.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import http.client
import random
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer
from psycopg.conninfo import make_conninfo

from pipeline import history, simulate
from pipeline.db import connect
from pipeline.demo import fresh_database
from pipeline.dev.worker_process import WorkerProcess
from pipeline.producer import publish, start_producer
from pipeline.progress import wait_caught_up
from pipeline.replay import delete_topics_named_after, replay
from pipeline.kafka_auth import client_options
from pipeline.models import Placement, SpaceSign
from pipeline.settings import Settings
from pipeline.timeutil import US, now_us
from pipeline.topics import EVENTS


class BenchFailed(Exception):
    """The pipeline did not get through a phase of the run (its logs are kept)."""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "n": len(ordered)}


async def raw_consume(settings: Settings, n: int) -> float:
    """Events per second a plain aiokafka consumer reads from the events topic."""
    consumer = AIOKafkaConsumer(settings.topic(EVENTS), **client_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
                                max_poll_records=5000)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if started is None and batch:
                started = time.perf_counter()
            seen += sum(len(records) for records in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class KeptAlive:
    """GETs of a worker's JSON answers over one kept-alive connection (opened again if it
    drops): the latency phase polls 200 times a second, and a connection per poll made the
    worker and the bench set up and tear down 200 TCP connections a second on the same two
    cores as the pipeline they measure."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def get_json(self, path: str) -> Any:
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                self.conn.request("GET", path)
                with self.conn.getresponse() as resp:
                    return orjson.loads(resp.read())
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


PROBE_DPU, PROBE_SPACE = "bench-probe", "bench-probe"
"""A DPU placed alone in a space of its own: its events are the latency phase's probes."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cycle collection in the bench's own process while a latency phase runs.

    The bench holds the fleet it generated: a full collection of that heap took 140–213 ms,
    and one that fell inside a phase held the poller (and its clock) back, adding its length to
    every probe seen meanwhile, the pipeline's latency unchanged. With the heap frozen they
    still took 30–62 ms. A phase's garbage waits for the collection after it."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def latency(settings: Settings, worker: WorkerProcess, dpus: list[str], rate: float,
            seconds: float, probe_every: int = 20) -> dict[str, float]:
    """Produce→visible in the realtime view, at a fixed rate over the whole fleet.

    Events go to every DPU of the fleet in turn, handed to the Kafka client on schedule
    without waiting for the one before to be acknowledged; every ``probe_every``-th is a
    probe, the probe DPU's crossing into its own space, whose count is watched: a probe's
    latency is the time from its send to the count showing it, while the rest of the fleet's
    events go through the same pipeline. ``rate_per_s`` is the rate achieved.
    """
    with collector_paused():
        return _latency(settings, worker, dpus, rate, seconds, probe_every)


def _latency(settings: Settings, worker: WorkerProcess, dpus: list[str], rate: float,
             seconds: float, probe_every: int) -> dict[str, float]:
    """The phase itself (see ``latency``)."""
    n = int(rate * seconds)
    base = worker.get_json(f"/spaces/{PROBE_SPACE}/count")[1]["count"]
    sent_at: list[float] = []
    seen: dict[int, float] = {}
    done = threading.Event()

    def observe() -> None:
        client = KeptAlive(worker.settings.web_host, worker.settings.web_port)
        try:
            while not done.is_set():
                count = client.get_json(f"/spaces/{PROBE_SPACE}/count")["count"] - base
                now = time.perf_counter()
                for k in range(len(seen) + 1, count + 1):
                    seen.setdefault(k, now)
                time.sleep(0.005)
        finally:
            client.close()

    async def produce() -> float:
        producer = await start_producer(settings)
        topic = settings.topic(EVENTS)
        try:
            acks, started = [], time.perf_counter()
            for i in range(n):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                probe = i % probe_every == 0
                dpu = PROBE_DPU if probe else dpus[i % len(dpus)]
                value = (b'{"dpu_id": "%s", "timestamp": "%s", "direction": 1}'
                         % (dpu.encode(), _iso_now().encode()))
                acks.append(await producer.send(topic, value, key=dpu.encode()))
                if probe:
                    sent_at.append(time.perf_counter())
            await asyncio.gather(*acks)
            return n / max(time.perf_counter() - started, 1e-9)
        finally:
            await producer.stop()

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    achieved = asyncio.run(produce())
    deadline = time.monotonic() + 120
    while len(seen) < len(sent_at) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    watcher.join()
    return {**percentiles([(seen[k + 1] - sent_at[k]) * 1000 for k in range(len(sent_at))
                           if k + 1 in seen]),
            "sent": n, "probes": len(sent_at), "rate_per_s": round(achieved),
            "target_rate_per_s": rate, "dpus": len(dpus) + 1}


def _iso_now() -> str:
    from pipeline.timeutil import iso

    return iso(now_us())


def build_history(url: str, rows: int, spaces: int) -> None:
    """``rows`` attributed deltas over ``spaces`` spaces and a year, with their rollups."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO space_count (space_id, event_ts, dpu_id, delta, entries, exits, "
            "count_on_arrival, counted_on_arrival, source, source_partition, source_offset, seq) "
            "SELECT 'hist-' || (i %% %s), timestamptz '2025-01-01' + (i / %s) * "
            "(interval '1 year' / (%s / %s)), 'bench', d, (d > 0)::int, (d < 0)::int, 0, true, "
            "'bench', 0, i, 0 FROM (SELECT i, CASE WHEN random() < 0.5 THEN 1 ELSE -1 END AS d "
            "FROM generate_series(1, %s) i) g", (spaces, spaces, rows, spaces, rows))
        conn.execute(
            "INSERT INTO space_count_hourly (space_id, hour, delta, entries, exits) "
            "SELECT space_id, date_trunc('hour', event_ts, 'UTC'), sum(delta), sum(entries), "
            "sum(exits) FROM space_count WHERE source = 'bench' GROUP BY 1, 2 "
            "ON CONFLICT (space_id, hour) DO NOTHING")
        conn.execute(
            "INSERT INTO space_count_daily (space_id, day, delta, entries, exits) "
            "SELECT space_id, date_trunc('day', hour, 'UTC'), sum(delta), sum(entries), "
            "sum(exits) FROM space_count_hourly WHERE space_id LIKE 'hist-%%' GROUP BY 1, 2 "
            "ON CONFLICT (space_id, day) DO NOTHING")
        conn.execute("INSERT INTO spaces (space_id) SELECT DISTINCT space_id FROM space_count "
                     "WHERE source = 'bench' ON CONFLICT DO NOTHING")
        conn.execute("ANALYZE space_count; ANALYZE space_count_hourly; ANALYZE space_count_daily")


async def asof_queries(url: str, spaces: int, n: int) -> dict[str, float]:
    rng = random.Random(3)
    start, span = 1735689600 * US, 365 * 86400 * US  # 2025-01-01, one year
    timings = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(n):
            space, at = f"hist-{rng.randrange(spaces)}", start + rng.randrange(span)
            t = time.perf_counter()
            await history.count_at(conn, space, at)
            timings.append((time.perf_counter() - t) * 1000)
    return percentiles(timings)


def wait_reconciled(url: str, timeout_s: float, poll_s: float = 0.2) -> bool:
    """Wait until no space is left to reconcile (``space_dirty`` empty); False past
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with connect(url, autocommit=True) as conn:
        while conn.execute("SELECT EXISTS (SELECT 1 FROM space_dirty)").fetchone()[0]:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
    return True


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def remove_run(settings: Settings, run: str, keep_logs: bool = False) -> None:
    """Delete the run's topics (its own and its worker's changelogs) and, unless a failed run's
    logs are to be kept, its local stores.

    A bench leaves nothing behind but its database, recreated by the next run: repeated runs
    must not pile topics up on the broker or stores on the disk.
    """
    await delete_topics_named_after(settings, run)
    if not keep_logs:
        shutil.rmtree(settings.state_dir, ignore_errors=True)


@dataclass(frozen=True)
class BenchSize:
    """How much a bench run counts."""

    events: int
    """Events published, counted end to end, and recounted by the rebuild."""
    dpus: int
    """DPUs of the synthetic fleet (each with a placement)."""
    spaces: int
    """Spaces of the synthetic fleet."""
    history_rows: int
    """``space_count`` rows generated for the as-of queries."""
    latency_rate: int
    """Events per second of the latency phase."""
    latency_s: int
    """Length of the latency phase."""


QUICK = BenchSize(events=100_000, dpus=2000, spaces=500, history_rows=1_000_000,
                  latency_rate=2000, latency_s=10)
FULL = BenchSize(events=1_000_000, dpus=2000, spaces=500, history_rows=10_000_000,
                 latency_rate=2000, latency_s=20)


class Workers:
    """The run's worker processes: one consumer group, each with its own web port and stores."""

    def __init__(self, settings: Settings, n: int) -> None:
        self.settings = [settings.with_(web_port=settings.web_port + i,
                                        state_dir=settings.state_dir / f"worker-{i}")
                         for i in range(n)]
        self.procs: list[WorkerProcess] = []
        self._peak_rss_mib = 0.0
        """The highest peak RSS of the workers stopped so far."""

    def start(self, log_name: str, timeout: float) -> WorkerProcess:
        """Start every worker, wait until each is ready; the first answers the realtime view."""
        self.procs = [WorkerProcess(s, s.state_dir / log_name).start() for s in self.settings]
        for proc in self.procs:
            proc.wait_ready(timeout=timeout)
        return self.procs[0]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.running:
                self._peak_rss_mib = max(self._peak_rss_mib, peak_rss_mib(proc.proc.pid))
            proc.stop()

    def drop_stores(self) -> None:
        """Remove every worker's local table stores, as a replay needs (it removes only those
        under the state directory it is given)."""
        for s in self.settings:
            shutil.rmtree(s.store_dir, ignore_errors=True)

    def peak_rss_mib(self) -> float:
        """The highest RSS any worker of the run reached: the ones counting end to end
        (stopped before the rebuild) as well as the running ones."""
        running = [peak_rss_mib(p.proc.pid) for p in self.procs if p.running]
        return max([self._peak_rss_mib, *running])


BENCH_LOCK = 0x64707562  # "dpub": one bench at a time per PostgreSQL server
BENCH_DATABASE = "dpu_bench"
WORKER_PORT_OFFSET = 17
"""The run's first worker listens on ``DPU_WEB_PORT`` + this, the next ones on the ports after."""


@contextmanager
def one_run_at_a_time(settings: Settings, ports: list[int]) -> Iterator[None]:
    """Hold the server's bench lock for the run; refuse at once, in one line, when another run
    holds it or a port the run's workers need is taken.

    Every run recreates the same database and gives its workers the same ports: a second run
    started meanwhile dropped the first one's database under it (a traceback mid-run).
    """
    with connect(make_conninfo(settings.database_url, dbname="postgres"),
                 autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (BENCH_LOCK,)).fetchone()[0]:
            raise BenchFailed("another dpu bench is running against this PostgreSQL server "
                              f"(each run recreates its {BENCH_DATABASE} database): wait for "
                              "it to end")
        for port in ports:
            if not port_free(settings.web_host, port):
                raise BenchFailed(f"port {port} on {settings.web_host} is in use, and the "
                                  "bench's worker needs it: stop what holds it or set "
                                  "DPU_WEB_PORT (the bench uses DPU_WEB_PORT + "
                                  f"{WORKER_PORT_OFFSET} on)")
        yield  # the lock goes with the connection


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def run_bench(base: Settings, size: BenchSize, say: Callable[[str], None],
              n_workers: int = 1) -> dict[str, Any]:
    first_port = base.web_port + WORKER_PORT_OFFSET
    with one_run_at_a_time(base, [first_port + i for i in range(n_workers)]):
        return _run_bench(base, size, say, n_workers)


def _run_bench(base: Settings, size: BenchSize, say: Callable[[str], None],
               n_workers: int) -> dict[str, Any]:
    n_events, n_dpus, n_spaces, history_rows = (size.events, size.dpus, size.spaces,
                                                size.history_rows)
    run = f"bench-{uuid.uuid4().hex[:6]}"
    settings = base.with_(topic_prefix=f"{run}-", app_id=f"dpu-{run}",
                          state_dir=base.state_dir / run,
                          web_port=base.web_port + WORKER_PORT_OFFSET,
                          database_url=fresh_database(base.database_url, BENCH_DATABASE))
    started_all = time.perf_counter()
    workers = Workers(settings, n_workers)
    result: dict[str, Any] = {"quick": size == QUICK}
    failed = False
    try:
        worker = workers.start("worker.log", timeout=90)
        start = now_us() - 2 * 86400 * US
        f = simulate.fleet(7, n_dpus, n_spaces, start)
        probe = Placement(PROBE_DPU, start, (SpaceSign(PROBE_SPACE, 1),), "bench-probe")
        asyncio.run(publish(settings, f.placements + f.resets + [probe]))
        if not asyncio.run(wait_caught_up(settings, 1800, poll_s=0.2)):
            raise RuntimeError("the pipeline did not take in the fleet")
        events = simulate.events(7, f, n_events, start)
        say(f"end to end: {n_events} events, {n_dpus} DPUs, {n_spaces} spaces")
        t = time.perf_counter()
        asyncio.run(publish(settings, events))
        produced = time.perf_counter() - t
        del events  # a million records the bench no longer needs, kept out of its heap
        if not asyncio.run(wait_caught_up(settings, 3600, poll_s=0.2)):
            raise RuntimeError("the pipeline did not catch up")
        caught_up = time.perf_counter()
        e2e = caught_up - t
        say(f"end to end: {n_events / e2e:.0f} events/s over {e2e:.1f} s")
        say("raw consume")
        raw = asyncio.run(raw_consume(settings, n_events))
        say(f"raw consume: {raw:.0f} events/s")
        rate = size.latency_rate
        say("latency at a fixed rate, while the burst's history is still being reconciled")
        lat = latency(settings, worker, f.dpus, rate, size.latency_s)
        say(f"latency: {lat}")
        say("reconciliation: until no space is left to reconcile")
        if not asyncio.run(wait_caught_up(settings, 600, poll_s=0.2)) or \
                not wait_reconciled(settings.database_url, 1800):
            raise RuntimeError("the pipeline did not catch up with the latency phase and "
                               "reconcile the burst's history")
        reconciled = time.perf_counter() - caught_up
        say(f"reconciled {reconciled:.1f} s after the end-to-end phase caught up")
        say("latency at a fixed rate, steady state (nothing left over from the burst)")
        steady = latency(settings, worker, f.dpus, rate, size.latency_s)
        say(f"latency, steady state: {steady}")
        say("rebuild: stop the workers, dpu replay, recount everything")
        # The latency phase's records must be sunk first, or replay (rightly) refuses.
        if not asyncio.run(wait_caught_up(settings, 600, poll_s=0.2)):
            raise RuntimeError("the pipeline did not catch up after the latency phase")
        workers.stop()
        t = time.perf_counter()
        workers.drop_stores()
        phases = {k: round(v, 1) for k, v in asyncio.run(
            replay(settings, say=lambda _: None)).items()}
        phases["replay_s"] = round(time.perf_counter() - t, 1)
        workers.start("worker-rebuild.log", timeout=300)
        phases["worker_ready_s"] = round(time.perf_counter() - t, 1)
        if not asyncio.run(wait_caught_up(settings, 3600, poll_s=0.2)):
            raise RuntimeError("the rebuild did not catch up")
        rebuild = time.perf_counter() - t
        say(f"rebuild: {rebuild:.1f} s ({phases})")
        say(f"as-of queries over {history_rows} history rows")
        build_history(settings.database_url, history_rows, 100)
        asof = asyncio.run(asof_queries(settings.database_url, 100, 500))
        result.update({
            "events": n_events, "partitions": settings.partitions, "workers": n_workers,
            "dpus": n_dpus, "spaces": n_spaces,
            "produce_s": round(produced, 2),
            "e2e_events_per_s": round(n_events / e2e),
            "raw_consume_events_per_s": round(raw),
            "latency_ms": lat,
            "reconciled_s": round(reconciled, 1),
            "latency_steady_ms": steady,
            "asof_query_ms": {**asof, "history_rows": history_rows},
            "rebuild_s": round(rebuild, 1),
            "rebuild_phases_s": phases,
            "rebuild_events": (n_events + len(f.placements) + len(f.resets) + 1 + lat["sent"]
                               + steady["sent"]),
            "worker_peak_rss_mib": workers.peak_rss_mib(),
        })
    except RuntimeError as exc:  # a phase failed: its workers' logs are worth keeping
        failed = True
        raise BenchFailed(f"{exc} (the run's logs are kept in {settings.state_dir})") from None
    finally:
        workers.stop()
        asyncio.run(remove_run(settings, run, keep_logs=failed))
    result["bench_s"] = round(time.perf_counter() - started_all, 1)
    return result
