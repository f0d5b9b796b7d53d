"""Starting a Faust worker: topics and schema first, then the agents and the web view."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import sys
import time
from typing import Callable, TypeVar

import mode.loop

from pipeline.settings import Settings, use

T = TypeVar("T")

log = logging.getLogger(__name__)


def drop_store_after_crash(settings: Settings) -> bool:
    """Remove the local table stores unless the last worker on them stopped cleanly.

    A killed worker can leave RocksDB holding writes whose changelog records never reached Kafka
    (a batch cut short between its steps). The changelogs are the truth other workers restore
    from, so this worker's stores are rebuilt from them too (Faust restores them at start).
    """
    store, clean = settings.store_dir, settings.state_dir / "worker.clean"
    dropped = False
    if store.exists() and any(store.iterdir()) and not clean.exists():
        log.warning("the last worker on %s did not stop cleanly: restoring the tables from "
                    "their changelogs", store)
        shutil.rmtree(store)
        dropped = True
    clean.unlink(missing_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    return dropped


async def changelog_ends(settings: Settings) -> dict[tuple[str, int], int]:
    """End offset of every partition of every table changelog, by (table, partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from pipeline.kafka_auth import client_options
    from pipeline.topics import TABLES, changelog

    tps = {TopicPartition(changelog(settings, t), p): (t, p)
           for t in TABLES for p in range(settings.partitions)}
    consumer = AIOKafkaConsumer(**client_options(settings))
    await consumer.start()
    try:
        return {tps[tp]: end for tp, end in (await consumer.end_offsets(list(tps))).items()}
    finally:
        await consumer.stop()


def stores_ahead_of_changelogs(settings: Settings, tables: dict) -> list[str]:
    """The local table stores that hold more than their changelogs (which were deleted, or
    replayed with another state directory): Faust would refuse to recover them."""
    ends = asyncio.run(changelog_ends(settings))
    ahead = []
    for name, table in tables.items():
        store = table.data
        if not hasattr(store, "partition_path"):
            continue  # not RocksDB: nothing kept on disk
        for partition in range(settings.partitions):
            path = store.partition_path(partition)
            if not path.exists():
                continue
            db = store.rocksdb_options.open(path)
            try:
                raw = db.get(store.offset_key)
            finally:
                db.close()
            end = ends.get((name, partition), 0)
            if raw is not None and int(raw) >= end:
                ahead.append(f"{name}-{partition} at offset {int(raw)}, its changelog ends "
                             f"at {end}")
    return ahead


def until_broker(step: Callable[[], T]) -> T:
    """``step()``, tried again every 2 s while the broker cannot be reached (a worker started
    by its supervisor while the broker restarts waits for it)."""
    from aiokafka.errors import KafkaError

    from pipeline.topics import BrokerUnavailable

    while True:
        try:
            return step()
        except (BrokerUnavailable, KafkaError, OSError) as exc:
            log.warning("waiting for the broker: %s", exc)
            time.sleep(2)


GC_THRESHOLDS = (5_000, 10, 2_000)
"""Young collections every 5,000 net allocations (CPython: 700), the middle generation every 10
of those, the whole heap every 20,000 at most (100 million allocations, as before).

Each pause holds the event loop, and every event in flight waits for it: at 50,000 and 20, a
young collection took 30-50 ms and a middle one 105-137 ms, the slowest probes of a latency
phase. Here they take at most 12 and 25 ms, and the full bench's throughput is the same within
the spread of runs."""


def tune_garbage_collector() -> None:
    """Keep the cycle collector from dominating a busy worker.

    Counting allocates hundreds of containers per event, and the tables' cache keeps hundreds
    of thousands alive: with CPython's defaults, full collections took 370 ms each, a fifth of
    the worker's time counting 100,000 events. Most garbage here dies by reference count;
    the collector runs far less often, and the code and data loaded at start are frozen out
    of its scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def share_the_gil(seconds: float) -> None:
    """Let the Kafka consumer's thread have the GIL sooner (``Settings.switch_interval_s``).

    Faust runs the consumer in a thread of its own; at CPython's 5 ms switch interval each
    fetch result waited up to that long, several times over, for the busy event loop to let go.
    """
    sys.setswitchinterval(seconds)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    from pipeline.db import DatabaseUnavailable, migrate
    from pipeline.topics import ensure_topics

    use(settings)
    drop_store_after_crash(settings)
    # Nothing counts without the broker: wait for it, as for the database below.
    until_broker(lambda: asyncio.run(ensure_topics(settings, changelogs=True)))
    try:
        migrate(settings.database_url)
        migrated = True
    except DatabaseUnavailable as exc:  # counting goes on; agents.schema migrates later
        log.warning("starting without PostgreSQL, its sinks wait: %s", exc)
        migrated = False

    # uvloop runs the event loops (the worker's and its Kafka consumer thread's): 1.4 times the
    # records per second of asyncio's own loop for an agent that does nothing.
    mode.loop.use("uvloop")
    # Import order matters: the settings above configure the app the topology attaches to.
    from faust import Worker

    import agents.schema
    from pipeline.topology import TABLES, app

    agents.schema.schema.migrated = migrated
    ahead = until_broker(lambda: stores_ahead_of_changelogs(settings, TABLES))
    if ahead:
        log.warning("the local table stores under %s are ahead of their changelogs (%s%s): "
                    "removing them, the tables are restored from the changelogs",
                    settings.store_dir, ahead[0], f" and {len(ahead) - 1} more" if ahead[1:]
                    else "")
        shutil.rmtree(settings.store_dir)
        settings.store_dir.mkdir(parents=True)

    tune_garbage_collector()
    share_the_gil(settings.switch_interval_s)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner turns the root logger to DEBUG so that every debug record (one
    # per message produced) can spin it: a tenth of the worker's time. Workers run headless.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if not exc.code:  # stopped cleanly: every batch in the stores was committed
            (settings.state_dir / "worker.clean").touch()
        raise
