"""``dpu demo``: the whole pipeline on the local services with the shipped demo data."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
import orjson
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.db import connect
from pipeline.dev.services import all_services
from pipeline.dev.worker_process import WorkerProcess
from pipeline.files import read_events, read_placements, read_resets
from pipeline.producer import publish
from pipeline.progress import wait_caught_up
from pipeline.settings import Settings
from pipeline.shipped import demo_dir

DEMO_DATA = demo_dir()


def fresh_database(url: str, name: str) -> str:
    """Drop and recreate database ``name`` on the server of ``url``; returns its URL."""
    with connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)


def run_demo(base: Settings, data_dir: str | None) -> None:
    folder = Path(data_dir) if data_dir else DEMO_DATA
    for service in all_services(base):
        service.start()
        click.echo(service.status())
    run = f"demo-{int(time.time())}"
    settings = base.with_(topic_prefix=f"{run}-", app_id=f"dpu-{run}",
                          database_url=fresh_database(base.database_url, "dpu_demo"),
                          state_dir=base.state_dir / run)
    worker = WorkerProcess(settings, settings.state_dir / "worker.log").start()
    try:
        worker.wait_ready()
        click.echo(f"worker up at {worker.base_url} (log: {worker.log_path})")
        placements, _ = read_placements(str(folder / "placements.jsonl"))
        resets, _ = read_resets(str(folder / "resets.csv"))
        events, bad = read_events(str(folder / "events.csv"))
        started = time.perf_counter()
        asyncio.run(publish(settings, [*placements, *resets]))
        # Placements and resets first, as an operator sets a building up before its sensors run.
        asyncio.run(wait_caught_up(settings, 60))
        asyncio.run(publish(settings, events))
        click.echo(f"published {len(placements)} placements, {len(resets)} resets, "
                   f"{len(events)} events ({len(bad)} invalid rows skipped)")
        if not asyncio.run(wait_caught_up(settings, 120)):
            raise click.ClickException("the pipeline did not catch up within 120 s")
        elapsed = time.perf_counter() - started
        status, body = worker.get_json("/spaces")
        mirror = redis.from_url(settings.redis_url).hgetall(f"{settings.redis_prefix}spaces")
        with connect(settings.database_url) as conn:
            telemetry = conn.execute("SELECT count(*) FROM dpu_telemetry").fetchone()[0]
            attributions = conn.execute("SELECT count(*) FROM space_count").fetchone()[0]
        click.echo(f"counted and sunk in {elapsed:.1f} s")
        for space in body["spaces"]:
            redis_count = None
            raw = mirror.get(space["space_id"].encode())
            if raw:
                redis_count = orjson.loads(raw)["count"]
            click.echo(f"{space['space_id']} = {space['count']}   (Redis mirror: {redis_count})")
        click.echo(f"dpu_telemetry rows: {telemetry}, space_count rows: {attributions}")
        click.echo("services keep running; stop them with: dpu dev down")
    finally:
        worker.stop()
