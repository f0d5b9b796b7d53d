"""The Faust application, configured from the one settings object. Agents attach themselves
(``pipeline.topology`` imports them all)."""

import asyncio
import functools
import logging

import faust

from pipeline import bulk_input
from pipeline.faust_fixes import (back_off_failed_metadata_updates, bounded_fetch_wait,
                                  commit_only_past_acknowledged_heads, flush_until_sent,
                                  ignore_acks_from_earlier_generations,
                                  keep_newer_committed_offsets, no_gaps_from_fetch_jumps,
                                  record_heartbeats, verify_relied_on)
from pipeline.kafka_auth import faust_credentials
from pipeline.settings import settings

log = logging.getLogger(__name__)
cfg = settings()
keep_newer_committed_offsets()
flush_until_sent()
commit_only_past_acknowledged_heads()
no_gaps_from_fetch_jumps()
ignore_acks_from_earlier_generations()
record_heartbeats()
back_off_failed_metadata_updates()
bounded_fetch_wait(cfg.fetch_max_wait_s)
verify_relied_on()
bulk_input.install()

app = faust.App(
    cfg.app_id,
    broker=cfg.kafka_url,
    broker_credentials=faust_credentials(cfg),
    broker_session_timeout=cfg.session_timeout_s,
    broker_heartbeat_interval=max(0.5, cfg.session_timeout_s / 10),
    store=cfg.store,
    datadir=str(cfg.store_dir),
    topic_partitions=cfg.partitions,
    topic_replication_factor=cfg.replication_factor,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=cfg.commit_interval_s,
    # Counting is made idempotent per source offset (tables/), sinks upsert: at-least-once
    # delivery then counts every record exactly once without Kafka transactions. (Faust's
    # exactly_once opens one transaction per destination partition and commits them one by one,
    # so a kill between two commits still loses the outputs of a repartition: measured with the
    # kill -9 tests, it lost space deltas.)
    processing_guarantee="at_least_once",
    producer_acks=-1,
    # Outputs are grouped per key and batch already; a short linger packs the rest into few
    # produce requests.
    producer_linger_ms=5,
    producer_max_batch_size=256 * 1024,
    web_enabled=True,
    web_bind=cfg.web_bind,
    web_port=cfg.web_port,
    web_host=cfg.web_host,
    canonical_url=f"http://{cfg.web_host}:{cfg.web_port}",
    web_in_thread=False,
    stream_wait_empty=False,
)

TIMERS: list[tuple[str, float]] = []
"""(name, interval in seconds) of every timer made by ``timer``, as they are defined (for
``faust -A pipeline.topology topology``)."""


def timer(interval: float, name: str):
    """``app.timer``, its failures logged rather than fatal.

    Faust crashes the whole app when a timer raises: one unexpected error in a periodic
    chore (the mirror's rewrite, the reconciler, the daily resets) stopped every agent.
    Each of these runs again at its next tick, which is what it needs.
    """
    def register(fun):
        @functools.wraps(fun)
        async def guarded() -> None:
            try:
                await fun()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer %s failed; it runs again in %g s", name, interval)
        TIMERS.append((name, interval))
        return app.timer(interval=interval, name=name)(guarded)
    return register
