"""The Faust application, configured from the one settings object. Agents attach themselves."""

import faust

from pipeline.settings import settings

cfg = settings()

app = faust.App(
    cfg.app_id,
    broker=cfg.kafka_url,
    store=cfg.store,
    datadir=str(cfg.state_dir / "worker"),
    topic_partitions=cfg.partitions,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=cfg.commit_interval_s,
    # Counting is made idempotent per source offset (tables/), sinks upsert: at-least-once
    # delivery then counts every record exactly once without Kafka transactions.
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
