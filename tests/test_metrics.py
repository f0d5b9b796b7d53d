"""``/metrics`` as Prometheus reads it: each test renders a registry of its own and parses the
text with ``prometheus_client``'s own parser."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import LATENCY_BUCKETS, CommitLatency, Metrics
from sinks.base import SinkStats

ROOT = Path(__file__).resolve().parents[1]


def scrape(metrics: Metrics) -> dict:
    """The rendered families by name (a counter's family is named without ``_total``)."""
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def value(families: dict, sample_name: str, **labels) -> float:
    family = families[re.sub(r"_(total|bucket|count|sum)$", "", sample_name)]
    found = [s.value for s in family.samples if s.name == sample_name and s.labels == labels]
    assert len(found) == 1, (sample_name, labels, family.samples)
    return found[0]


def watched(metrics: Metrics, lag=None, sinks=()) -> Metrics:
    metrics.watch(partition_lag=lambda: dict(lag or {}), sinks=lambda: list(sinks))
    return metrics


def test_every_metric_has_help_a_dpu_name_and_counters_end_in_total():
    families = scrape(watched(Metrics(), {("dpu-events", 0): 1},
                              [SimpleNamespace(name="dpu_log", stats=SinkStats())]))
    assert len(families) > 20
    for family in families.values():
        assert family.name.startswith("dpu_"), family.name
        assert family.documentation.strip(), f"{family.name} has no HELP"
        if family.type == "counter":
            assert {s.name for s in family.samples} == {family.name + "_total"}
    types = {name: f.type for name, f in families.items()}
    assert types["dpu_events_counted"] == "counter"
    assert types["dpu_consumer_lag_records"] == "gauge"
    assert types["dpu_sink_batches"] == "counter"
    assert types["dpu_sink_backlog_rows"] == "gauge"
    assert types["dpu_sensors"] == "gauge"
    text = Metrics().render().decode()
    assert "# TYPE dpu_events_counted_total counter" in text
    assert "_created" not in text  # no creation-time gauge beside every counter


def test_counters_are_cumulative_and_each_registry_counts_its_own():
    metrics, other = Metrics(), Metrics()
    metrics.events_counted.inc(3)
    assert value(scrape(metrics), "dpu_events_counted_total") == 3
    metrics.events_counted.inc(4)
    metrics.events_duplicate.inc()
    families = scrape(metrics)
    assert value(families, "dpu_events_counted_total") == 7
    assert value(families, "dpu_events_duplicate_total") == 1
    assert value(scrape(other), "dpu_events_counted_total") == 0


def test_latency_histograms_are_in_seconds_with_cumulative_buckets():
    metrics = Metrics()
    for seconds in (0.003, 0.2, 0.2, 7.0, 120.0):
        metrics.sink_write_seconds.labels("space_count").observe(seconds)
    metrics.sink_write_seconds.labels("redis").observe(0.0005)
    families = scrape(metrics)
    assert families["dpu_sink_write_seconds"].type == "histogram"
    sink = {"sink": "space_count"}
    assert value(families, "dpu_sink_write_seconds_count", **sink) == 5
    assert value(families, "dpu_sink_write_seconds_sum", **sink) == pytest.approx(127.403)
    buckets = {float(s.labels["le"]): s.value for s in families["dpu_sink_write_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["sink"] == "space_count"}
    assert sorted(buckets) == [*LATENCY_BUCKETS, float("inf")]
    assert buckets[0.001] == 0 and buckets[0.005] == 1 and buckets[0.25] == 3
    assert buckets[10.0] == buckets[60.0] == 4 and buckets[float("inf")] == 5
    counts = [buckets[le] for le in sorted(buckets)]
    assert counts == sorted(counts)  # each bucket holds the ones below it
    assert value(families, "dpu_sink_write_seconds_count", sink="redis") == 1


def test_lag_per_topic_and_partition_and_sink_statistics_read_at_scrape_time():
    lag = {("dpu-events", 0): 12, ("dpu-events", 1): 0, ("dpu-space-deltas", 0): 3}
    log = SimpleNamespace(name="dpu_log", stats=SinkStats(batches=4, rows=40, pending=2))
    mirrors = [SimpleNamespace(name="redis", stats=SinkStats(batches=1, failures=2, rejected=1)),
               SimpleNamespace(name="redis", stats=SinkStats(batches=5, pending=7))]
    metrics = watched(Metrics(), lag, [log, *mirrors])
    families = scrape(metrics)
    assert {(s.labels["topic"], s.labels["partition"]): s.value
            for s in families["dpu_consumer_lag_records"].samples} == \
        {("dpu-events", "0"): 12, ("dpu-events", "1"): 0, ("dpu-space-deltas", "0"): 3}
    assert value(families, "dpu_sink_batches_total", sink="dpu_log") == 4
    assert value(families, "dpu_sink_rows_total", sink="dpu_log") == 40
    assert value(families, "dpu_sink_backlog_rows", sink="dpu_log") == 2
    # The two Redis mirrors share a name: added up under it.
    assert value(families, "dpu_sink_batches_total", sink="redis") == 6
    assert value(families, "dpu_sink_backlog_rows", sink="redis") == 7
    assert value(families, "dpu_sink_write_failures_total", sink="redis") == 2
    assert value(families, "dpu_sink_rejects_total", sink="redis") == 1
    log.stats.batches += 1
    lag[("dpu-events", 0)] = 0
    families = scrape(metrics)  # read again, never cached
    assert value(families, "dpu_sink_batches_total", sink="dpu_log") == 5
    assert value(families, "dpu_consumer_lag_records", topic="dpu-events", partition="0") == 0


def test_sensor_statuses_start_at_zero_and_are_set_together():
    metrics = Metrics()
    assert {s.labels["status"]: s.value for s in scrape(metrics)["dpu_sensors"].samples} == \
        {"ok": 0, "silent": 0, "never_seen": 0}
    metrics.set_sensor_statuses({"ok": 40, "silent": 2, "never_seen": 1})
    metrics.set_sensor_statuses({"ok": 41, "never_seen": 1})  # silent left out: none now
    assert {s.labels["status"]: s.value for s in scrape(metrics)["dpu_sensors"].samples} == \
        {"ok": 41, "silent": 0, "never_seen": 1}
    with pytest.raises(ValueError, match="unknown sensor status 'broken'"):
        metrics.set_sensor_statuses({"broken": 1})


def test_commit_latency_counts_only_commits_that_moved_an_offset():
    metrics = Metrics()
    sensor = CommitLatency(metrics)
    consumer = SimpleNamespace(_committed_offset=defaultdict(lambda: None))
    tp = TP("dpu-events", 0)

    state = sensor.on_commit_initiated(consumer)
    consumer._committed_offset[TP("dpu-events", 1)]  # Faust looked it up: None, no commit
    sensor.on_commit_completed(consumer, state)
    assert value(scrape(metrics), "dpu_commit_seconds_count") == 0

    state = sensor.on_commit_initiated(consumer)
    consumer._committed_offset[tp] = 10
    sensor.on_commit_completed(consumer, state)
    families = scrape(metrics)
    assert value(families, "dpu_commit_seconds_count") == 1
    assert 0 <= value(families, "dpu_commit_seconds_sum") < 1


class FakeConsumer:
    def __init__(self, highwaters: dict, committed: dict, started: bool = True) -> None:
        self.highwaters, self._committed_offset, self.started = highwaters, committed, started

    def assignment(self):
        if not self.started:
            raise ConsumerNotStarted("Consumer thread not yet started")
        return set(self.highwaters)

    def highwater(self, tp):
        high = self.highwaters[tp]
        if isinstance(high, Exception):
            raise high
        return high


def test_partition_lag_is_per_pipeline_partition_from_the_committed_offset():
    from pipeline.views.status import PIPELINE_TOPICS, partition_lag

    events = next(t for t in PIPELINE_TOPICS if t.endswith("dpu-events"))
    consumer = FakeConsumer(
        {TP(events, 0): 100, TP(events, 1): 50, TP(events, 2): 7, TP(events, 3): None,
         TP(events, 4): RuntimeError("no metadata yet"), TP("x-spaces-changelog", 0): 999},
        {TP(events, 0): 90, TP(events, 1): 50})
    assert partition_lag(consumer) == {(events, 0): 10, (events, 1): 0, (events, 2): 7}
    assert partition_lag(FakeConsumer({TP(events, 0): 5}, {}, started=False)) == {}


def test_every_metric_the_code_updates_exists():
    """A call site naming a metric that is not there would fail only when it runs (some run
    only in faults): every ``metrics.<name>.`` in the sources must be an attribute."""
    metrics = Metrics()
    used = set()
    for package in ("agents", "pipeline", "sinks", "tables"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r"\bmetrics\.(\w+)\.(?:inc|observe|labels|set)\(",
                                   path.read_text()))
    assert "events_counted" in used and "sink_write_seconds" in used
    assert not {name for name in used if not hasattr(metrics, name)}
