"""Hostile input and security defaults against a real worker: fuzzed records and HTTP
parameters, oversized records, and the worker over SASL."""

from __future__ import annotations

import urllib.parse

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.dev.services import DEV_SASL_PASSWORD, DEV_SASL_USER, Kafka
from pipeline.files import read_events
from pipeline.models import Reject, parse_event
from pipeline.settings import Settings
from pipeline.timeutil import now_us
from tests.integration.conftest import poll
from tests.integration.test_end_to_end import FLOORPLAN, START

ONCE = settings(max_examples=1, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=8)
field_values = {
    "dpu_id": st.sampled_from(["283", "423", "", "x" * 300]) | json_values,
    "timestamp": st.sampled_from(["2018-02-26T16:10:00Z", "2018-02-30T25:00:00Z", "yesterday",
                                  "2999-01-01T00:00:00Z", "1518000000"]) | json_values,
    "direction": st.sampled_from([1, -1, 0, 2, "1", True]) | json_values,
    "event_id": st.none() | st.sampled_from(["a", "b"]) | json_values,
}
event_like = st.fixed_dictionaries({}, optional=field_values).map(orjson.dumps)
records = st.one_of(
    st.binary(max_size=64),  # malformed bytes
    event_like,  # the right fields with any values
    st.builds(lambda d, t, s: orjson.dumps({"dpu_id": d, "timestamp": t, "direction": s}),
              st.sampled_from(["283", "423"]), st.sampled_from(["2018-02-26T16:10:00Z",
                                                                 "2018-02-27T09:00:00Z"]),
              st.sampled_from([1, -1])),  # valid ones, so counting goes on among the rest
)


@ONCE
@given(st.lists(records, min_size=150, max_size=150))
def test_fuzzed_records_are_dead_lettered_with_a_reason_and_valid_ones_counted(pipeline,
                                                                               values):
    pipeline.publish(FLOORPLAN)
    oversized = orjson.dumps({"dpu_id": "283", "timestamp": "2018-02-26T16:10:00Z",
                              "direction": 1, "pad": "x" * pipeline.settings.max_record_bytes})
    values = values + [oversized]
    now, items, rejected, counted = now_us(), [], 0, 0
    seen_ids = set()
    for raw in values:
        parsed = parse_event(raw, now_us=now, max_bytes=pipeline.settings.max_record_bytes,
                             max_future_s=pipeline.settings.max_future_s)
        if isinstance(parsed, Reject):
            rejected += 1
            items.append((b"283", raw))
            continue
        items.append((parsed.dpu_id.encode(), raw))
        if parsed.event_id is None or (parsed.dpu_id, parsed.event_id) not in seen_ids:
            counted += 1
            seen_ids.add((parsed.dpu_id, parsed.event_id))
    pipeline.send_raw("dpu-events", items)
    pipeline.wait()
    assert pipeline.worker.proc.poll() is None, "the worker died"
    reasons = pipeline.sql("SELECT reason FROM dpu_rejects")
    assert len(reasons) == rejected and all(r for (r,) in reasons)
    assert any("byte limit" in r for (r,) in reasons)  # the oversized one
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0] == counted
    assert pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == len(values)


TS = st.one_of(st.text(max_size=30), st.sampled_from(
    ["2018-02-26T16:10:00Z", "2018-02-26", "-1", "1e309", "2018-02-26T16:10:00+25:00",
     "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "NaN", "\x00"]))
ids = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["A", "B", "283", "..", "%"]))


def q(**params: str) -> str:
    return urllib.parse.urlencode(params)


def p(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


paths = st.one_of(
    st.builds(lambda s, t: f"/spaces/{p(s)}/count?{q(at=t)}", ids, TS),
    st.builds(lambda s: f"/spaces/{p(s)}/count", ids),
    st.builds(lambda s, a, b, k, z: f"/spaces/{p(s)}/series?{q(start=a, end=b, bucket=k, tz=z)}",
              ids, TS, TS, st.one_of(st.text(max_size=6), st.sampled_from(
                  ["15m", "1h", "1d", "0m", "1s", "100000d", "-5m"])),
              st.one_of(st.text(max_size=12), st.sampled_from(["UTC", "Europe/Paris", "Mars/X"]))),
    st.builds(lambda d: f"/dpus/{p(d)}", ids),
    st.builds(lambda s, t: f"/count?{q(space=s, timestamp=t)}", ids, TS),
    st.builds(lambda s: f"/?{q(space=s)}", ids),
    st.builds(lambda s: f"/spaces?{q(x=s)}", ids),
)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(paths)
def test_fuzzed_http_parameters_get_an_answer_never_a_server_error(pipeline, path):
    try:
        status, body = pipeline.get(path)
    except ValueError:  # an answer that is not JSON
        pytest.fail(f"GET {path} did not answer JSON")
    assert status < 500, (path, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), (path, body)


def sasl_url() -> str:
    ep = Kafka(Settings.from_env()).sasl_endpoint
    return f"kafka://{ep.host}:{ep.port}"


SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": DEV_SASL_USER, "sasl_password": DEV_SASL_PASSWORD}


@pytest.mark.settings(kafka_url=sasl_url(), kafka_extra=SASL)
def test_the_worker_and_the_cli_run_over_sasl(pipeline, sample_csv):
    events, _ = read_events(str(sample_csv))
    pipeline.publish(FLOORPLAN + START + events)
    pipeline.wait()
    assert poll(lambda: pipeline.count("A") == 31 and pipeline.count("B") == 18,
                what="the sample's counts over SASL")
    wrong = pipeline.settings.with_(kafka_extra={**SASL, "sasl_password": "wrong"})
    proc = pipeline.cli("wait", "--timeout", "5", check=False, settings=wrong)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
