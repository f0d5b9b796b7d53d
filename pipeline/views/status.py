"""Health of the worker: ``/status`` (caught up? lag, sink backlog) and ``/metrics``."""

from __future__ import annotations

from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agents.sinks import SINKS
from pipeline import topics
from pipeline.app import app, cfg
from pipeline.metrics import CommitLatency, metrics


PIPELINE_TOPICS = frozenset(cfg.topic(name) for name in topics.ALL)


def assigned(consumer) -> set | None:
    """The partitions the consumer holds; None while the worker starts (no consumer yet: a
    request then found ConsumerNotStarted and got a 500, once in CI)."""
    try:
        return consumer.assignment()
    except ConsumerNotStarted:
        return None


def consumer_lag() -> dict[str, int]:
    """Records not yet processed, per pipeline topic, over the partitions this worker owns."""
    lag: dict[str, int] = {}
    for (topic, _), n in partition_lag(app.consumer).items():
        lag[topic] = lag.get(topic, 0) + n
    return lag


@app.page("/status")
class StatusView(View):
    async def get(self, request: Request) -> Response:
        lag = consumer_lag()
        sinks = {s.name if s.name != "redis" else f"redis-{i}": {
            "pending": s.stats.pending, "batches": s.stats.batches, "rows": s.stats.rows,
            "failures": s.stats.failures, "last_error": s.stats.last_error,
            "rejected": s.stats.rejected, "last_rejected": s.stats.last_rejected}
            for i, s in enumerate(SINKS)}
        backlog = sum(s.stats.pending for s in SINKS)
        # Ready: consumer started, not rebalancing, tables recovered (it may own no partition
        # when the group has more workers than partitions).
        holding = assigned(app.consumer)
        ready = holding is not None and not app.rebalancing and \
            app.tables.recovery.completed.is_set()
        return self.json({"caught_up": sum(lag.values()) == 0 and backlog == 0,
                          "ready": ready, "assigned": len(holding or ()),
                          "consumer_lag": lag, "sink_backlog": backlog, "sinks": sinks})


def partition_lag(consumer) -> dict[tuple[str, int], int]:
    """Records not yet committed per pipeline topic and partition this worker owns (table
    changelogs are read for recovery, never committed). A partition whose high watermark is not
    known yet is left out; one never committed lags by its high watermark."""
    lag: dict[tuple[str, int], int] = {}
    for tp in assigned(consumer) or ():
        if tp.topic not in PIPELINE_TOPICS:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        if high is None:
            continue
        committed = consumer._committed_offset.get(tp)  # next offset to commit
        lag[(tp.topic, tp.partition)] = max(0, high - (committed or 0))
    return lag


metrics.watch(partition_lag=lambda: partition_lag(app.consumer), sinks=lambda: SINKS)
app.sensors.add(CommitLatency(metrics))


@app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument with a charset in it.
        return self.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
