"""``GET /metrics`` of a real worker, parsed as Prometheus would."""

from __future__ import annotations

import urllib.request

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from pipeline.models import DpuEvent
from pipeline.timeutil import parse_ts
from tests.integration.conftest import poll
from tests.integration.test_end_to_end import FLOORPLAN


def scrape(pipeline) -> tuple[str, dict]:
    """The answer's content type and its metric families by name."""
    with urllib.request.urlopen(pipeline.worker.base_url + "/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
        return resp.headers["Content-Type"], {
            f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict, family: str, sample: str) -> dict:
    """``sample``'s values in ``family`` by their labels."""
    return {tuple(sorted(s.labels.items())): s.value
            for s in families[family].samples if s.name == sample}


def test_metrics_count_the_events_and_show_the_lag_of_every_partition(pipeline):
    t = parse_ts("2018-02-25T10:00:00Z")
    events = [DpuEvent(("283", "423", "777")[i % 3], t + i * 1_000_000, 1 if i % 2 else -1,
                       f"id-{i}") for i in range(40)]
    pipeline.publish(FLOORPLAN)
    pipeline.publish([*events, events[7]])  # event_id id-7 again: counted once
    pipeline.send_raw("dpu-events", [(b"283", b"not json")])
    pipeline.wait()

    content_type, families = scrape(pipeline)
    assert content_type == CONTENT_TYPE_LATEST
    assert samples(families, "dpu_events_counted", "dpu_events_counted_total") == {(): 40}
    assert samples(families, "dpu_events_duplicate", "dpu_events_duplicate_total") == {(): 1}
    assert samples(families, "dpu_records_rejected", "dpu_records_rejected_total") == {(): 1}

    # One gauge per partition of each input topic (this worker owns them all), at 0 once the
    # worker committed everything.
    events_topic = pipeline.settings.topic("dpu-events")
    lag = samples(families, "dpu_consumer_lag_records", "dpu_consumer_lag_records")
    assert {dict(labels)["partition"] for labels in lag if dict(labels)["topic"] ==
            events_topic} == {str(p) for p in range(pipeline.settings.partitions)}
    assert all(value >= 0 for value in lag.values())

    def lag_left() -> float:
        return sum(samples(scrape(pipeline)[1], "dpu_consumer_lag_records",
                           "dpu_consumer_lag_records").values())
    poll(lambda: lag_left() == 0, timeout=30, what="no lag in /metrics")

    # Sinks by name; the rows dpu_log wrote are the rows it holds.
    rows = samples(families, "dpu_sink_rows", "dpu_sink_rows_total")
    assert rows[(("sink", "dpu_log"),)] == pipeline.sql("SELECT count(*) FROM dpu_log")[0][0]
    assert samples(families, "dpu_sink_batches", "dpu_sink_batches_total")[
        (("sink", "dpu_log"),)] >= 1
    assert samples(families, "dpu_sink_write_seconds", "dpu_sink_write_seconds_count")[
        (("sink", "space_count"),)] >= 1
    # Latencies: both counting stages and the consumer's commits observed.
    stages = samples(families, "dpu_produce_to_counted_seconds",
                     "dpu_produce_to_counted_seconds_count")
    assert stages[(("stage", "count-dpus"),)] >= 1 and stages[(("stage", "count-spaces"),)] >= 1
    assert samples(families, "dpu_commit_seconds", "dpu_commit_seconds_count")[()] >= 1
    # Sensor health, from the worker's scan every 10 s: DPUs 283, 423 and 777 last heard in 2018.
    poll(lambda: samples(scrape(pipeline)[1], "dpu_sensors", "dpu_sensors") == {
        (("status", "ok"),): 0, (("status", "silent"),): 3, (("status", "never_seen"),): 0},
        timeout=40, what="dpu_sensors from the health scan")
