"""The ``dpu`` command line (SPEC §6). Errors a user can cause end in one line and exit 1."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request

import click
import orjson

from pipeline.settings import Settings, SettingsError

def _user_errors() -> tuple[type[Exception], ...]:
    from pipeline.db import DatabaseUnavailable
    from pipeline.bench import BenchFailed
    from pipeline.dev.services import ServiceError
    from pipeline.faust_fixes import FaustChanged
    from pipeline.files import FileError
    from pipeline.topics import BrokerUnavailable, TopicsRefused

    return (SettingsError, DatabaseUnavailable, ServiceError, FileError, BrokerUnavailable,
            BenchFailed, FaustChanged, TopicsRefused)


def friendly(fn):
    """Turn the errors a user can cause into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            click.echo(f"dpu: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


ENVIRONMENT_POINTER = ("Configured by the environment: every DPU_* variable is listed by "
                       "`dpu --help`; the options --kafka-url, --database-url, --redis-url and "
                       "--topic-prefix go before the command.")


class DocumentedCommand(click.Command):
    """A subcommand whose help ends by saying where its configuration comes from."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(ENVIRONMENT_POINTER)


class DocumentedGroup(click.Group):
    """``dpu`` and its groups: the top-level help lists every environment variable the
    settings read (most have no option); the groups' and commands' help points to it."""

    command_class = DocumentedCommand
    group_class = type  # subgroups are DocumentedGroups too

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if ctx.parent is not None:
            formatter.write_paragraph()
            formatter.write_text(ENVIRONMENT_POINTER)
            return
        from pipeline.environment import environment_variables

        with formatter.section("Environment (read once at start; an option overrides its "
                               "variable)"):
            formatter.write_dl(environment_variables())


@click.group(cls=DocumentedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dpu-pipeline", prog_name="dpu",
                      message="%(prog)s %(version)s")
@click.option("--kafka-url", envvar="DPU_KAFKA_URL", show_envvar=True,
              help="Broker, kafka://host:port.")
@click.option("--database-url", envvar="DPU_DATABASE_URL", show_envvar=True,
              help="PostgreSQL URL.")
@click.option("--redis-url", envvar="DPU_REDIS_URL", show_envvar=True, help="Redis URL.")
@click.option("--topic-prefix", envvar="DPU_TOPIC_PREFIX", show_envvar=True,
              help="Prefix of every topic.")
@click.pass_context
@friendly
def main(ctx: click.Context, kafka_url, database_url, redis_url, topic_prefix) -> None:
    """dpu-pipeline: occupancy counts from door-sensor (DPU) events."""
    # A client command reports an unreachable broker in one line of its own; aiokafka's
    # connection log lines would only repeat it. (`dpu worker` restores them.)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    s = Settings.from_env()
    changes = {k: v for k, v in dict(kafka_url=kafka_url, database_url=database_url,
                                     redis_url=redis_url, topic_prefix=topic_prefix).items()
               if v is not None}
    ctx.obj = s.with_(**changes)


@main.command()
@click.option("--web-port", type=int, envvar="DPU_WEB_PORT", show_envvar=True,
              help="Port of the HTTP view.")
@click.option("--web-bind", envvar="DPU_WEB_BIND", show_envvar=True,
              help="Interface of the HTTP view; given here, also the host other workers reach "
                   "it at.")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
@friendly
def worker(ctx, web_port, web_bind, loglevel) -> None:
    """Run a Faust worker: counting agents, sinks and the HTTP view."""
    from click.core import ParameterSource

    from pipeline.worker import run_worker

    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    s = _settings(ctx)
    if web_port:
        s = s.with_(web_port=web_port)
    # From the environment the settings have these already, DPU_WEB_HOST included.
    if web_bind and ctx.get_parameter_source("web_bind") is ParameterSource.COMMANDLINE:
        s = s.with_(web_bind=web_bind, web_host=web_bind)
    run_worker(s, loglevel)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@click.pass_context
@friendly
def db_migrate(ctx) -> None:
    """Create the database if needed and apply pending migrations."""
    from pipeline.db import migrate

    applied = migrate(_settings(ctx).database_url)
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))


def _report_bad(bad, strict: bool) -> None:
    for row in bad[:20]:
        click.echo(f"  line {row.line}: {row.reason}", err=True)
    if len(bad) > 20:
        click.echo(f"  ... and {len(bad) - 20} more", err=True)
    if bad and strict:
        raise click.ClickException(f"{len(bad)} invalid record(s); nothing published (--strict)")


def _load_and_publish(ctx: click.Context, read, file: str, strict: bool, what: str) -> None:
    """Read FILE with ``read``, report invalid rows, publish the valid records."""
    good, bad = read(file, max_future_s=_settings(ctx).max_future_s)
    _report_bad(bad, strict)
    _publish(_settings(ctx), good, what)
    if bad:
        click.echo(f"rejected {len(bad)} invalid record(s)", err=True)


def _one(ctx: click.Context, build, obj: dict):
    """A record built from command-line values, checked as the workers check records (ids,
    instants from 1970 to the clock plus ``max_future_s``); an invalid value is one line and
    exit 1."""
    from pipeline.models import Invalid

    try:
        return build(obj, None, _settings(ctx).max_future_s)
    except Invalid as exc:
        raise click.ClickException(str(exc)) from None


def _publish(settings: Settings, records, what: str) -> None:
    from rich.progress import Progress

    from pipeline.producer import publish

    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"publishing {what}", total=len(records))
        sent = asyncio.run(publish(settings, records,
                                   lambda n: bar.update(task, completed=n)))
    click.echo(f"published {sent} {what}")


@main.command()
@click.argument("file")
@click.option("--strict", is_flag=True, help="Publish nothing if any record is invalid.")
@click.pass_context
@friendly
def produce(ctx, file, strict) -> None:
    """Publish events from FILE (CSV, JSON lines or JSON array; - for stdin)."""
    from pipeline.files import read_events

    _load_and_publish(ctx, read_events, file, strict, "events")


@main.group()
def placements() -> None:
    """Where DPUs hang."""


@placements.command("load")
@click.argument("file")
@click.option("--strict", is_flag=True, help="Publish nothing if any record is invalid.")
@click.pass_context
@friendly
def placements_load(ctx, file, strict) -> None:
    """Publish placements from FILE (JSON lines or dpu_location CSV)."""
    from pipeline.files import read_placements

    _load_and_publish(ctx, read_placements, file, strict, "placements")


@placements.command("set")
@click.argument("dpu_id")
@click.option("--doorway", help="Doorway the DPU hangs over.")
@click.option("--space", "spaces", multiple=True, metavar="SPACE:SIGN",
              help="A space and the sign of a +1 crossing for it, e.g. A:-1 (repeatable; "
                   "none: the DPU was taken down).")
@click.option("--at", "at", required=True, help="Installed at (ISO 8601).")
@click.pass_context
@friendly
def placements_set(ctx, dpu_id, doorway, spaces, at) -> None:
    """Publish one placement of DPU_ID."""
    from pipeline.models import placement_from_obj

    items = []
    for spec in spaces:
        name, sep, sign = spec.rpartition(":")
        if not sep or not name:
            raise click.BadParameter(f"{spec!r} is not SPACE:SIGN", param_hint="--space")
        items.append({"space_id": name, "direction": sign})
    p = _one(ctx, placement_from_obj, {"dpu_id": dpu_id, "doorway_id": doorway,
                                       "installed_at": at, "spaces": items})
    _publish(_settings(ctx), [p], "placements")


@main.group()
def spaces() -> None:
    """Spaces: resets and counts."""


@spaces.command("reset")
@click.argument("space_id")
@click.option("--count", type=int, required=True)
@click.option("--at", "at", required=True, help="Reset instant (ISO 8601).")
@click.pass_context
@friendly
def spaces_reset(ctx, space_id, count, at) -> None:
    """Set SPACE_ID's count to --count at --at."""
    from pipeline.models import reset_from_obj

    r = _one(ctx, reset_from_obj, {"space_id": space_id, "at": at, "count": count})
    _publish(_settings(ctx), [r], "resets")


@spaces.command("daily-reset")
@click.argument("space_id")
@click.option("--time", "wall", help="Local wall-clock time, HH:MM.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--count", type=int, default=0, show_default=True)
@click.option("--since", help="Apply to the days after this instant (ISO 8601), e.g. to "
              "backfill last month's nightly resets. Default: from now on.")
@click.option("--off", is_flag=True, help="Remove the daily reset.")
@click.pass_context
@friendly
def spaces_daily_reset(ctx, space_id, wall, tz, count, since, off) -> None:
    """Reset SPACE_ID every day at a local time."""
    from pipeline.models import reset_from_obj

    if not off and not wall:
        raise click.UsageError("give --time HH:MM (or --off)")
    if off and since:
        raise click.UsageError("--since goes with --time, not --off")
    daily = None if off else {"time": wall, "tz": tz, "count": count}
    if since:
        daily["since"] = since
    r = _one(ctx, reset_from_obj, {"space_id": space_id, "daily_reset": daily})
    _publish(_settings(ctx), [r], "daily-reset settings")


@spaces.command("load")
@click.argument("file")
@click.option("--strict", is_flag=True, help="Publish nothing if any record is invalid.")
@click.pass_context
@friendly
def spaces_load(ctx, file, strict) -> None:
    """Publish resets from FILE (CSV space_id,at,count or JSON lines)."""
    from pipeline.files import read_resets

    _load_and_publish(ctx, read_resets, file, strict, "resets")


def http_get(settings: Settings, path: str, params: dict | None = None) -> tuple[int, dict]:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    url = f"http://{settings.web_host}:{settings.web_port}{path}{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError):
        raise click.ClickException(
            f"no worker answers at {url.split('?')[0]}: start one with `dpu worker`") from None


@main.command()
@click.argument("space_id")
@click.option("--at", "at", help="Count as of this instant (ISO 8601) instead of now.")
@click.pass_context
@friendly
def count(ctx, space_id, at) -> None:
    """Print SPACE_ID's count (asks a worker's HTTP view)."""
    params = {"at": at} if at else None
    status, body = http_get(_settings(ctx), f"/spaces/{urllib.parse.quote(space_id, safe='')}"
                            "/count", params)
    if status != 200:
        raise click.ClickException(body.get("error", f"HTTP {status}"))
    click.echo(orjson.dumps(body).decode())


@main.group()
def dpus() -> None:
    """DPUs: sensor health over the whole fleet."""


@dpus.command("list")
@click.option("--status", type=click.Choice(["ok", "silent", "never_seen"]),
              help="Only DPUs of this status.")
@click.option("--silent-after", help="Quiet period after which a DPU is silent: 90s, 30m, 2h, "
              "1d (default: the workers' DPU_SILENT_AFTER_S).")
@click.option("--limit", type=click.IntRange(1), help="At most this many DPUs (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@friendly
def dpus_list(ctx, status, silent_after, limit, as_json) -> None:
    """List every DPU with its status, last event, events today, rejects and placement
    (asks a worker's HTTP view, which gathers every worker's DPUs)."""
    after, shown = "", 0
    if not as_json:
        click.echo(f"{'dpu':<16} {'status':<10} {'last event':<24} {'today':>6} {'in':>7} "
                   f"{'out':>7} {'rejects':>7}  doorway  spaces")
    while limit is None or shown < limit:
        params = {"limit": str(min(1000, (limit or 1000) - shown))}
        params.update({k: v for k, v in (("after", after), ("status", status),
                                         ("silent_after", silent_after)) if v})
        code, body = http_get(_settings(ctx), "/dpus", params)
        if code != 200:
            raise click.ClickException(body.get("error", f"HTTP {code}"))
        for d in body["dpus"]:
            shown += 1
            if as_json:
                click.echo(orjson.dumps(d).decode())
                continue
            p = d["placement"] or {}
            spaces = " ".join(f"{s['space_id']}:{s['direction']:+d}" for s in p.get("spaces", ()))
            click.echo(f"{d['dpu_id']:<16} {d['status']:<10} {d['last_event_at'] or '-':<24} "
                       f"{d['events_today']:>6} {d['ins']:>7} {d['outs']:>7} "
                       f"{'-' if d['rejects'] is None else d['rejects']:>7}  "
                       f"{p.get('doorway_id') or '-':<8} {spaces or '-'}")
        if not body["next"]:
            break
        after = body["next"]


@main.command()
@click.option("--timeout", type=float, default=120, show_default=True, help="Seconds.")
@click.pass_context
@friendly
def wait(ctx, timeout) -> None:
    """Exit 0 once everything produced so far is counted and sunk."""
    from pipeline.progress import wait_caught_up

    last: dict = {}
    ok = asyncio.run(wait_caught_up(_settings(ctx), timeout, on_poll=last.update))
    if not ok:
        raise click.ClickException(f"not caught up after {timeout:g}s; behind: "
                                   f"{orjson.dumps(last).decode()}")
    click.echo("caught up")


@main.group()
def dev() -> None:
    """Local Kafka, PostgreSQL and Redis without Docker."""


@dev.command("up")
@click.pass_context
@friendly
def dev_up(ctx) -> None:
    """Start the services (idempotent) and print export lines: eval "$(dpu dev up)"."""
    from pipeline.dev.services import all_services, exports

    s = _settings(ctx)
    for service in all_services(s):
        service.start()
        click.echo(f"# {service.status()}", err=True)
    for line in exports(s):
        click.echo(line)


@dev.command("down")
@click.option("--remove-data", is_flag=True,
              help="Also delete the services' data (topics, databases), e.g. before deleting "
                   "a clone: PostgreSQL's may live outside it.")
@click.pass_context
@friendly
def dev_down(ctx, remove_data) -> None:
    """Stop the services that `dpu dev up` started."""
    from pipeline.dev.services import all_services

    for service in reversed(all_services(_settings(ctx))):
        click.echo(f"{service.name}: {'stopped' if service.stop() else 'was not running'}")
        if remove_data:
            if service.running():
                raise click.ClickException(f"{service.name} still runs: its data is kept")
            service.remove_data()


@dev.command("status")
@click.pass_context
@friendly
def dev_status(ctx) -> None:
    """Show which services run; exit 1 if any is down."""
    from pipeline.dev.services import all_services

    services = all_services(_settings(ctx))
    for service in services:
        click.echo(service.status())
    if not all(service.running() for service in services):
        sys.exit(1)


@main.command()
@click.option("--from-log", is_flag=True,
              help="Publish the events topic again from dpu_log first (when the topic lost data).")
@click.pass_context
@friendly
def replay(ctx, from_log) -> None:
    """Rebuild all state from the input topics (run with the deployment's workers stopped)."""
    from pipeline.replay import ReplayRefused, replay as do_replay

    try:
        asyncio.run(do_replay(_settings(ctx), say=lambda m: click.echo(m, err=True),
                              from_log=from_log))
    except ReplayRefused as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--quick", is_flag=True, help="A small run (about two minutes).")
@click.option("--dpus", type=click.IntRange(1), help="Fleet size instead of the run's own.")
@click.option("--spaces", "n_spaces", type=click.IntRange(1),
              help="Spaces instead of the run's own.")
@click.option("--events", "n_events", type=click.IntRange(1),
              help="Events instead of the run's own.")
@click.option("--workers", "n_workers", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Worker processes of the pipeline (one consumer group).")
@click.pass_context
@friendly
def bench(ctx, quick, dpus, n_spaces, n_events, n_workers) -> None:
    """Measure the pipeline on the local services; prints one JSON object."""
    from dataclasses import replace

    from pipeline.bench import FULL, QUICK, run_bench

    size = QUICK if quick else FULL
    overrides = {"dpus": dpus, "spaces": n_spaces, "events": n_events}
    size = replace(size, **{k: v for k, v in overrides.items() if v is not None})
    result = run_bench(_settings(ctx), size, lambda msg: click.echo(f"# {msg}", err=True),
                       n_workers)
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--dpus", type=int, default=100, show_default=True)
@click.option("--spaces", "n_spaces", type=int, default=30, show_default=True)
@click.option("--events", "n_events", type=int, default=10_000, show_default=True)
@click.option("--rate", type=float, default=0, help="Events per second (0: as fast as possible).")
@click.option("--disorder", type=float, default=0.0, show_default=True,
              help="Share of events that arrive late (half as many again arrive twice).")
@click.pass_context
@friendly
def simulate(ctx, seed, dpus, n_spaces, n_events, rate, disorder) -> None:
    """Publish a synthetic fleet (placements, resets) and its traffic, deterministic per seed."""
    from pipeline import simulate as sim
    from pipeline.timeutil import US, now_us

    s = _settings(ctx)
    start = now_us() - 86400 * US
    f = sim.fleet(seed, dpus, n_spaces, start)
    _publish(s, f.placements + f.resets, "placements and resets")
    events = sim.events(seed, f, n_events, start, disorder=disorder)
    if not rate:
        _publish(s, events, "events")
        return
    from rich.progress import Progress

    from pipeline.producer import publish

    async def paced() -> None:
        step = max(1, int(rate / 10))
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("simulating", total=len(events))
            for i in range(0, len(events), step):
                started = asyncio.get_running_loop().time()
                await publish(s, events[i:i + step])
                bar.update(task, completed=i + step)
                await asyncio.sleep(max(0.0, step / rate - (asyncio.get_running_loop().time()
                                                            - started)))
    asyncio.run(paced())
    click.echo(f"published {len(events)} events at about {rate:g}/s")


@main.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with placements.jsonl, resets.csv, events.csv (default: shipped demo).")
@click.pass_context
@friendly
def demo(ctx, data_dir) -> None:
    """Services up, schema migrated, a worker started, demo data published, counts printed."""
    from pipeline.demo import run_demo

    run_demo(_settings(ctx), data_dir)


if __name__ == "__main__":
    main()
