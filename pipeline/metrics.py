"""The worker's Prometheus metrics (``GET /metrics``), kept by ``prometheus_client``.

Every metric lives in a registry of the worker's own (``Metrics.registry``), not in
``prometheus_client``'s global one, so a test builds a ``Metrics()`` of its own and reads exactly
what it did. Names follow Prometheus' conventions: a ``dpu_`` prefix, base units in the name
(seconds, records), ``_total`` on counters. Counts are counters incremented where things happen;
what other objects keep already (the consumer's offsets, the sinks' statistics) is read when
``/metrics`` is scraped (``WorkerState``), so it is never out of date and never doubled.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from faust import Sensor
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pipeline.health import STATUSES

# The text format carries a counter's or histogram's creation time as one more gauge series per
# metric (``dpu_events_counted_created``): twice the series for nothing Prometheus needs.
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
"""Upper bounds in seconds: a millisecond write to the minute a backlog or a rebalance can take."""

SENSOR_STATUSES = STATUSES
"""The states ``dpu_sensors`` counts DPUs in (``pipeline.health``)."""


class Metrics:
    """The worker's metrics in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        # Counting (agents/counting.py).
        self.events_counted = Counter(
            "dpu_events_counted_total",
            "Events counted on their DPU, each once (duplicates and records read again after a "
            "restart or a rebalance are not counted again).", registry=r)
        self.events_duplicate = Counter(
            "dpu_events_duplicate_total",
            "Events not counted because their event_id was already counted for their DPU.",
            registry=r)
        self.records_rejected = Counter(
            "dpu_records_rejected_total",
            "Input records refused (not JSON, wrong types, bad timestamps, wrong key...) and "
            "sent to the dead-letter topic.", registry=r)
        self.records_redelivered = Counter(
            "dpu_records_redelivered_total",
            "Input records and space deltas delivered again (after a restart or a rebalance) "
            "and recognised as already applied.", registry=r)
        self.produce_to_counted = Histogram(
            "dpu_produce_to_counted_seconds",
            "Seconds from the Kafka timestamp of a batch's oldest input record to the batch's "
            "counts being in this worker's tables (visible to the HTTP view), once per batch and "
            "counting stage: count-dpus (events, placements) and count-spaces (space deltas, "
            "resets); an event's produce-to-visible is about the sum of the two.",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r)

        # HTTP ingestion (pipeline/views/ingest.py).
        self.http_accepted = Counter(
            "dpu_http_records_accepted_total",
            "Records accepted by POST /events, /placements or /spaces/{id}/resets (valid and "
            "acknowledged by Kafka), per kind: events, placements, resets.", ["kind"],
            registry=r)
        self.http_rejected = Counter(
            "dpu_http_records_rejected_total",
            "Records refused by those routes as invalid (answered with a reason), per kind.",
            ["kind"], registry=r)
        self.http_unacknowledged = Counter(
            "dpu_http_records_unacknowledged_total",
            "Valid records of those routes that Kafka did not acknowledge in time (answered "
            "503, to be sent again), per kind.", ["kind"], registry=r)
        for kind in ("events", "placements", "resets"):  # shown at 0 before the first request
            for counter in (self.http_accepted, self.http_rejected, self.http_unacknowledged):
                counter.labels(kind)

        # Sinks (sinks/base.py); their batches, rows, failures and backlog are read from the
        # sinks at scrape time (WorkerState).
        self.sink_write_seconds = Histogram(
            "dpu_sink_write_seconds",
            "Seconds each successful write of a sink took (a batch's PostgreSQL transaction or "
            "Redis script, or the filing of refused records), per sink.", ["sink"],
            buckets=LATENCY_BUCKETS, registry=r)

        # Kafka consumer and commits.
        self.commit_seconds = Histogram(
            "dpu_commit_seconds",
            "Seconds a commit of consumer offsets took, from Faust's start of the commit to its "
            "end (attached messages sent, offsets committed); rounds that moved no offset are "
            "left out.", buckets=LATENCY_BUCKETS, registry=r)
        self.commit_stalls = Counter(
            "dpu_commit_stalls_total",
            "Partitions whose commits stood still with records to read and that were read "
            "again from their committed offset (commit watchdog).", registry=r)
        self.fetch_jumps = Counter(
            "dpu_fetch_jumps_total",
            "Fetches that jumped over offsets, each checked by the commit watchdog before the "
            "commit may pass them.", registry=r)
        self.partitions_read_from_the_start = Counter(
            "dpu_partitions_read_from_the_start_total",
            "Assigned partitions with no committed offset, sought to their first offset.",
            registry=r)
        self.acks_forgotten_at_seek = Counter(
            "dpu_acks_forgotten_at_seek_total",
            "Acknowledgements dropped because their partition was about to be read again from "
            "its committed offset after a rebalance.", registry=r)
        self.stale_acks = Counter(
            "dpu_stale_acks_total",
            "Acknowledgements of records read in an earlier consumer-group generation, dropped "
            "(the records are read again).", registry=r)
        self.stale_records_dropped = Counter(
            "dpu_stale_records_dropped_total",
            "Fetched records of an earlier consumer-group generation dropped unprocessed (read "
            "again from the committed offset).", registry=r)
        self.records_left_unacknowledged = Counter(
            "dpu_records_left_unacknowledged_total",
            "Acknowledgements held back because the record's batch was not yet applied.",
            registry=r)
        self.producer_flush_stalls = Counter(
            "dpu_producer_flush_stalls_total",
            "Rounds a producer flush waited for messages still buffered or in transit.",
            registry=r)

        # Ownership of partitions and tables.
        self.writes_waited_for_heartbeat = Counter(
            "dpu_writes_waited_for_heartbeat_total",
            "Batches whose writes waited for a heartbeat confirming the worker still owns "
            "their partitions.", registry=r)
        self.batches_given_up_after_rebalance = Counter(
            "dpu_batches_given_up_after_rebalance_total",
            "Batches given up unwritten because their partitions moved to another worker.",
            registry=r)
        self.changelog_records_restored = Counter(
            "dpu_changelog_records_restored_total",
            "Changelog records applied to a table while restoring it (or keeping a standby).",
            registry=r)
        self.stale_changelog_records_skipped = Counter(
            "dpu_stale_changelog_records_skipped_total",
            "Changelog records skipped while restoring a table because a newer owner of their "
            "partition had written after them.", registry=r)

        # Timers.
        self.reconcile_rounds = Counter(
            "dpu_reconcile_rounds_total",
            "Rounds of the reconciler that recomputed count_reconciled of marked spaces.",
            registry=r)
        self.daily_resets_published = Counter(
            "dpu_daily_resets_published_total",
            "Daily resets published to the resets topic as they fell due.", registry=r)

        # Sensor health, set by whoever watches the DPUs (set_sensor_statuses).
        self.sensors = Gauge(
            "dpu_sensors",
            "DPUs (door sensors) this worker holds, by health at its latest scan (every 10 s): ok "
            "(an event within DPU_SILENT_AFTER_S), silent (none since), never_seen (no event "
            "counted yet); sum over the workers for the fleet.", ["status"], registry=r)
        for status in SENSOR_STATUSES:
            self.sensors.labels(status).set(0)

    def set_sensor_statuses(self, counts: Mapping[str, int]) -> None:
        """Set ``dpu_sensors``: the number of DPUs per status; a status left out is 0."""
        unknown = set(counts) - set(SENSOR_STATUSES)
        if unknown:
            raise ValueError(f"unknown sensor status {sorted(unknown)[0]!r}; expected one of "
                             f"{', '.join(SENSOR_STATUSES)}")
        for status in SENSOR_STATUSES:
            self.sensors.labels(status).set(counts.get(status, 0))

    def watch(self, partition_lag: Callable[[], Mapping[tuple[str, int], int]],
              sinks: Callable[[], Iterable[Any]]) -> "WorkerState":
        """Report the consumer's lag and the sinks' statistics at every scrape."""
        state = WorkerState(partition_lag, sinks)
        self.registry.register(state)
        return state

    def render(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


class WorkerState:
    """A collector of what the worker keeps anyway, read at scrape time.

    ``partition_lag()``: records not yet committed per (topic, partition) this worker consumes;
    ``sinks()``: objects with a ``name`` and ``stats`` (``sinks.base.SinkStats``). Sinks of the
    same name (the Redis mirrors) are added up under it.
    """

    def __init__(self, partition_lag: Callable[[], Mapping[tuple[str, int], int]],
                 sinks: Callable[[], Iterable[Any]]) -> None:
        self.partition_lag = partition_lag
        self.sinks = sinks

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        lag, backlog, batches, rows, failures, rejects = self._families()
        for (topic, partition), records in sorted(self.partition_lag().items()):
            lag.add_metric([topic, str(partition)], records)
        by_name: dict[str, list[int]] = {}
        for sink in self.sinks():
            s = sink.stats
            totals = by_name.setdefault(sink.name, [0, 0, 0, 0, 0])
            for i, value in enumerate((s.pending, s.batches, s.rows, s.failures, s.rejected)):
                totals[i] += value
        for name, totals in sorted(by_name.items()):
            for family, value in zip((backlog, batches, rows, failures, rejects), totals):
                family.add_metric([name], value)
        return [lag, backlog, batches, rows, failures, rejects]

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        """The families without samples: the registry checks their names at registration."""
        return self._families()

    @staticmethod
    def _families() -> tuple:
        sink = ["sink"]
        return (
            GaugeMetricFamily(
                "dpu_consumer_lag_records",
                "Records of a pipeline topic's partition assigned to this worker not yet "
                "committed (high watermark minus committed offset).",
                labels=["topic", "partition"]),
            GaugeMetricFamily(
                "dpu_sink_backlog_rows",
                "Rows a sink holds buffered, not yet written.", labels=sink),
            CounterMetricFamily(
                "dpu_sink_batches",
                "Batches a sink has written.", labels=sink),
            CounterMetricFamily(
                "dpu_sink_rows",
                "Rows a sink has written (rows an upsert found already there included).",
                labels=sink),
            CounterMetricFamily(
                "dpu_sink_write_failures",
                "A sink's failed write attempts (an outage or a lost connection), each retried.",
                labels=sink),
            CounterMetricFamily(
                "dpu_sink_rejects",
                "Input records a sink refused for good (the database refused the data), filed "
                "in dpu_rejects.", labels=sink),
        )


class CommitLatency(Sensor):
    """A Faust sensor timing offset commits into ``Metrics.commit_seconds``.

    Faust starts a commit round every commit interval, also with nothing to commit: such
    rounds would fill the histogram with zeros, so only rounds that moved an offset count.
    (Faust's own ``PrometheusMonitor`` is not used: it registers in the global registry and a
    route of its own, observes milliseconds, and adds labelled counter updates to every message
    and table read and write.)
    """

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    def on_commit_initiated(self, consumer: Any) -> Any:
        return time.monotonic(), committed_offsets(consumer)

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        started, before = state
        if committed_offsets(consumer) != before:
            self.metrics.commit_seconds.observe(time.monotonic() - started)


def committed_offsets(consumer: Any) -> dict:
    """The consumer's committed offsets (Faust's defaultdict also holds None for partitions
    it only looked up)."""
    return {tp: offset for tp, offset in consumer._committed_offset.items() if offset is not None}


metrics = Metrics()
"""The worker's metrics (one worker per process)."""
