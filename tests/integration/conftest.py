"""Integration fixtures: the real broker, PostgreSQL and Redis; a real worker per test.

Each test gets its own topic prefix, consumer group, PostgreSQL schema, state directory and web
port, so tests never see each other's data. A missing service fails the test with the command that
starts it; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest
import redis
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.db import ensure_database
from pipeline.dev.worker_process import WorkerProcess
from pipeline.producer import publish
from pipeline.progress import wait_caught_up
from pipeline.replay import delete_topics_named_after
from pipeline.kafka_auth import client_options
from pipeline.settings import Settings
from pipeline.topics import BrokerUnavailable, admin_client
from tests.integration import containers

HOW_TO_START = ('start the services with `scripts/test` (or `eval "$(.venv/bin/dpu dev up)"`) '
                "or point DPU_KAFKA_URL, DPU_DATABASE_URL and DPU_REDIS_URL at running ones")
TEST_DATABASE = "dpu_test"
FAULT_TABLE: list[dict] = []
"""Rows the fault suite and the campaign add (``test_faults.py``), printed after the run."""
CAMPAIGN: dict = {"seeds": [], "faults": Counter(), "events": 0, "as_of": 0, "hostile": {},
                  "left_out": 0}
"""What the fault campaign's passing seeds did (``test_campaign.py``), printed after the run."""


ARTIFACTS_WRITTEN: list[str] = []
"""Files tests leave for people to look at (the dashboard's screenshot), printed after the run."""


def pytest_terminal_summary(terminalreporter) -> None:
    if ARTIFACTS_WRITTEN:
        terminalreporter.section("artifacts")
        for line in ARTIFACTS_WRITTEN:
            terminalreporter.write_line(line)
    if FAULT_TABLE:
        cols = ("scenario", "faults", "events", "in_flight", "lost", "doubled", "all_equal")
        terminalreporter.section("fault table")
        terminalreporter.write_line(" | ".join(cols))
        for row in FAULT_TABLE:
            terminalreporter.write_line(" | ".join(str(row[c]) for c in cols))
    if CAMPAIGN["seeds"]:
        terminalreporter.section("fault campaign")
        write = terminalreporter.write_line
        write(f"seeds passed: {len(CAMPAIGN['seeds'])} ({', '.join(map(str, CAMPAIGN['seeds']))})"
              f"; events {CAMPAIGN['events']}; as-of answers compared {CAMPAIGN['as_of']}")
        write("faults applied: " + ", ".join(f"{k} {n}" for k, n in
                                             sorted(CAMPAIGN["faults"].items())))
        write(f"workers that ended themselves, left out of their group, and were started "
              f"again: {CAMPAIGN['left_out']}")
        write("hostile records and where they ended up:")
        for name, where in sorted(CAMPAIGN["hostile"].items()):
            write(f"  {name}: {where}")


@pytest.fixture(scope="session")
def base_settings():
    with ExitStack() as stack:
        s = Settings.from_env()
        if containers.wanted():
            s = s.with_(**containers.start(stack))
        yield checked(s)


def checked(s: Settings) -> Settings:
    """``s`` pointed at the test database, once every service answers; else fail, saying how."""
    try:
        admin = asyncio.run(admin_client(s, timeout_s=10))
        asyncio.run(admin.close())
    except BrokerUnavailable as exc:
        pytest.fail(f"{exc}; {HOW_TO_START}", pytrace=False)
    try:
        url = make_conninfo(s.database_url, dbname=TEST_DATABASE)
        ensure_database(url)
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {s.database_url} ({exc}); {HOW_TO_START}",
                    pytrace=False)
    try:
        redis.from_url(s.redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {s.redis_url} ({exc}); {HOW_TO_START}",
                    pytrace=False)
    return s.with_(database_url=url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(condition: Callable[[], Any], timeout: float = 60, interval: float = 0.2,
         what: str = "condition") -> Any:
    """Until ``condition()`` is truthy (returns it), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what} not reached within {timeout:.0f}s (last: {last!r})", pytrace=False)


def counters(worker: WorkerProcess) -> dict[str, float]:
    """The worker's non-zero counters from /metrics (none if it does not answer)."""
    try:
        with urllib.request.urlopen(worker.base_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.type == "counter" and sample.value:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[family.name.removeprefix("dpu_") + (f"{{{labels}}}" if labels else "")] = \
                    sample.value
    return out


@dataclass
class Pipeline:
    settings: Settings
    worker: WorkerProcess
    schema: str
    tmp: Path
    others: list[WorkerProcess] = field(default_factory=list)
    """Workers started by ``add_worker``, stopped at teardown."""

    def add_worker(self, name: str) -> WorkerProcess:
        """Another worker of the same deployment (same group), with its own port and state."""
        settings = self.settings.with_(web_port=free_port(), state_dir=self.tmp / name)
        worker = WorkerProcess(settings, self.tmp / f"{name}.log").start()
        self.others.append(worker)
        return worker

    def restart(self, worker: WorkerProcess | None = None) -> WorkerProcess:
        """A new process in place of ``worker`` (default: the first), same port and state."""
        old = worker or self.worker
        new = WorkerProcess(old.settings, old.log_path).start()
        if old is self.worker:
            self.worker = new
        else:
            self.others[self.others.index(old)] = new
        return new

    def publish(self, records) -> int:
        return asyncio.run(publish(self.settings, records))

    def send_raw(self, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
        async def go() -> None:
            producer = AIOKafkaProducer(**client_options(self.settings))
            await producer.start()
            try:
                for key, value in items:
                    await producer.send_and_wait(self.settings.topic(topic), value, key=key)
            finally:
                await producer.stop()
        asyncio.run(go())

    def wait(self, timeout: float = 90) -> None:
        last: list[dict] = [{}]
        if not asyncio.run(wait_caught_up(self.settings, timeout, on_poll=last.append)):
            pytest.fail(f"pipeline not caught up within {timeout}s (behind: {last[-1]}); see "
                        f"{self.worker.log_path}", pytrace=False)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.settings.database_url) as conn:
            return conn.execute(query, params).fetchall()

    def get(self, path: str) -> tuple[int, Any]:
        return self.worker.get_json(path)

    def post(self, path: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
        import urllib.request

        import orjson

        req = urllib.request.Request(self.worker.base_url + path, data=body, method="POST")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null")

    def count(self, space: str) -> int | None:
        """The realtime count, None for an unknown space (404); any other answer fails."""
        status, body = self.get(f"/spaces/{space}/count")
        if status not in (200, 404):
            pytest.fail(f"GET /spaces/{space}/count answered {status}: {body}", pytrace=False)
        return body["count"] if status == 200 else None

    def redis_counts(self) -> dict[str, int]:
        import orjson

        raw = redis.from_url(self.settings.redis_url).hgetall(f"{self.settings.redis_prefix}spaces")
        return {k.decode(): orjson.loads(v)["count"] for k, v in raw.items()}

    def assert_history_matches(self, events, placements, resets) -> int:
        """Once reconciled, every space_count row's count_reconciled is count(S, its instant).

        Returns the number of rows compared.
        """
        from pipeline.timeutil import to_us
        from tests import reference

        poll(lambda: self.sql("SELECT count(*) FROM space_dirty")[0][0] == 0 or None,
             what="reconciliation done")
        rows = self.sql("SELECT space_id, event_ts, count_reconciled FROM space_count")
        index = reference.Index(events, placements, resets)
        expected = [(s, t, c, index.count(s, to_us(t))) for s, t, c in rows]
        wrong = [row for row in expected if row[2] != row[3]]
        assert not wrong, f"{len(wrong)} rows (space, instant, reconciled, expected): " \
                          f"{sorted(wrong)[:8]}"
        return len(rows)

    def cli(self, *args: str, check: bool = True,
            settings: Settings | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **(settings or self.settings).to_env()}
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            pytest.fail(f"dpu {' '.join(args)} exited {proc.returncode}: {proc.stderr}",
                        pytrace=False)
        return proc


@pytest.fixture
def pipeline(base_settings: Settings, tmp_path, request) -> Pipeline:
    """A worker of its own; ``@pytest.mark.settings(name=value)`` changes its settings."""
    marker = request.node.get_closest_marker("settings")
    run = f"t{uuid.uuid4().hex[:10]}"
    params = conninfo_to_dict(base_settings.database_url)
    params["options"] = f"-csearch_path={run}"
    settings = base_settings.with_(
        topic_prefix=f"{run}-", app_id=f"dpu-{run}", state_dir=tmp_path / "state",
        database_url=make_conninfo("", **params), web_port=free_port(),
        commit_interval_s=0.2, sink_flush_s=0.05, **(marker.kwargs if marker else {}))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout=180)
    except RuntimeError as exc:
        worker.kill()
        pytest.fail(f"{exc}\n{(tmp_path / 'worker.log').read_text()[-3000:]}", pytrace=False)
    pipe = Pipeline(settings, worker, run, tmp_path)
    yield pipe
    for w in [pipe.worker, *pipe.others]:
        w.stop()
    if os.environ.get("DPU_TEST_KEEP"):
        return  # left for a post-mortem: schema and topic prefix are the run id in the logs
    with psycopg.connect(base_settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(run)))
    asyncio.run(delete_topics_named_after(settings, run))


