"""Hostile input and security defaults against a real worker: fuzzed records and HTTP
parameters, oversized records, and the worker over SASL."""

from __future__ import annotations

import unicodedata
import urllib.parse

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from pipeline.dev.services import DEV_SASL_PASSWORD, DEV_SASL_USER, Kafka
from pipeline.files import read_events
from pipeline.models import Reject, parse_event
from pipeline.settings import Settings
from pipeline.timeutil import now_us
from tests.integration.conftest import poll
from tests.integration.test_end_to_end import FLOORPLAN, START

json_values = st.recursive(  # integers within orjson's 64 bits
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=True) |
    st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=8)
OUT_OF_RANGE = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+23:59",
                "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00+00:01", "9999-12-30T00:00:00Z",
                "9999-12-31T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999-23:59"]
"""Instants at the ends of what datetime holds: before 1970 or far past the clock + 24 h."""
CALENDAR_EDGES = [*OUT_OF_RANGE, "1970-01-01T00:00:00Z", "2018-02-26T16:10:00Z\x00", "\x1f"]
CONTROL_TEXT = st.text(st.characters(categories=["Cc"]), min_size=1, max_size=3)
CONTROL_IDS = st.builds(lambda c, at: "283"[:at] + c + "283"[at:],
                        st.characters(categories=["Cc"]), st.integers(0, 3))
"""The id 283 with a control character (NUL, the \\x1f key separator, DEL, C1) somewhere."""
field_values = {
    "dpu_id": st.sampled_from(["283", "423", "", "x" * 300]) | CONTROL_IDS | json_values,
    "timestamp": st.sampled_from(["2018-02-26T16:10:00Z", "2018-02-30T25:00:00Z", "yesterday",
                                  "2999-01-01T00:00:00Z", "1518000000", *CALENDAR_EDGES])
    | json_values,
    "direction": st.sampled_from([1, -1, 0, 2, "1", True]) | json_values,
    "event_id": st.none() | st.sampled_from(["a", "b", "a\x00", "\x1f"]) | json_values,
}
HOSTILE = {
    "dpu_id": CONTROL_IDS | st.sampled_from(["", " ", "x" * 129, 2 ** 64 - 1, 1.5]),
    "timestamp": st.sampled_from(CALENDAR_EDGES),
    "direction": st.sampled_from([0, 2, True, "x", None]),
    "event_id": st.builds(lambda c: "e" + c, st.characters(categories=["Cc"])) |
    st.sampled_from(["", "\x00"]),
}


@st.composite
def near_valid(draw) -> dict:
    """A valid event with up to two fields made hostile: the edges of the definitions."""
    item = {"dpu_id": draw(st.sampled_from(["283", "423"])),
            "timestamp": draw(st.sampled_from(["2018-02-26T16:10:00Z", "1970-01-01T00:00:00Z"])),
            "direction": draw(st.sampled_from([1, -1]))}
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE)), max_size=2, unique=True)):
        item[name] = draw(HOSTILE[name])
    return item


def must_refuse(item) -> bool:
    """Independently of the code under test: a control character in an id, an edge instant."""
    if not isinstance(item, dict):
        return True
    ids = [item.get(k) for k in ("dpu_id", "event_id")]
    return (any(isinstance(v, str) and any(unicodedata.category(c) == "Cc" for c in v)
                for v in ids) or item.get("timestamp") in OUT_OF_RANGE)


event_like = st.fixed_dictionaries({}, optional=field_values).map(orjson.dumps)
records = st.one_of(
    st.binary(max_size=64),  # malformed bytes
    event_like,  # the right fields with any values
    near_valid().map(orjson.dumps),
    st.builds(lambda d, t, s: orjson.dumps({"dpu_id": d, "timestamp": t, "direction": s}),
              st.sampled_from(["283", "423"]), st.sampled_from(["2018-02-26T16:10:00Z",
                                                                 "2018-02-27T09:00:00Z"]),
              st.sampled_from([1, -1])),  # valid ones, so counting goes on among the rest
)


@settings(max_examples=4, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(records, min_size=150, max_size=150))
def test_fuzzed_records_are_dead_lettered_with_a_reason_and_valid_ones_counted(pipeline,
                                                                               values):
    # Hypothesis tries its simplest example first (150 empty records): only the examples after
    # it fuzz. They share the worker, so each checks what it adds; event ids count once across.
    shared = pipeline.__dict__.setdefault("fuzz", {"event_ids": set()})
    if not shared.get("placed"):
        pipeline.publish(FLOORPLAN)
        shared["placed"] = True
    tables = ("dpu_rejects", "dpu_telemetry", "dpu_log")
    before = {t: pipeline.sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    oversized = orjson.dumps({"dpu_id": "283", "timestamp": "2018-02-26T16:10:00Z",
                              "direction": 1, "pad": "x" * pipeline.settings.max_record_bytes})
    values = values + [oversized]
    now, items, rejected, counted = now_us(), [], 0, 0
    seen_ids = shared["event_ids"]
    for raw in values:
        parsed = parse_event(raw, now_us=now, max_bytes=pipeline.settings.max_record_bytes,
                             max_future_s=pipeline.settings.max_future_s)
        if isinstance(parsed, Reject):
            rejected += 1
            items.append((b"283", raw))
            continue
        assert not must_refuse(orjson.loads(raw)), raw
        items.append((parsed.dpu_id.encode(), raw))
        if parsed.event_id is None or (parsed.dpu_id, parsed.event_id) not in seen_ids:
            counted += 1
            seen_ids.add((parsed.dpu_id, parsed.event_id))
    pipeline.send_raw("dpu-events", items)
    pipeline.wait()
    assert pipeline.worker.proc.poll() is None, "the worker died"
    added = {t: pipeline.sql(f"SELECT count(*) FROM {t}")[0][0] - before[t] for t in tables}
    assert added == {"dpu_rejects": rejected, "dpu_telemetry": counted,
                     "dpu_log": len(values)}, values
    reasons = pipeline.sql("SELECT reason FROM dpu_rejects")
    assert all(r for (r,) in reasons)
    assert any("byte limit" in r for (r,) in reasons)  # the oversized one


TS = st.one_of(st.text(max_size=30), st.sampled_from(
    ["2018-02-26T16:10:00Z", "2018-02-26", "-1", "1e309", "2018-02-26T16:10:00+25:00",
     "NaN", "\x00", *CALENDAR_EDGES]))
ids = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["A", "B", "283", "..", "%"]),
                st.builds(lambda a, c, b: a + c + b, st.sampled_from(["", "A", "283"]),
                          CONTROL_TEXT, st.sampled_from(["", "B"])))


def q(**params: str) -> str:
    return urllib.parse.urlencode(params)


def p(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


paths = st.one_of(
    st.builds(lambda s, t: f"/spaces/{p(s)}/count?{q(at=t)}", ids, TS),
    st.builds(lambda s: f"/spaces/{p(s)}/count", ids),
    st.builds(lambda s, a, b, k, z: f"/spaces/{p(s)}/series?{q(start=a, end=b, bucket=k, tz=z)}",
              ids, TS, TS, st.one_of(st.text(max_size=6), st.sampled_from(
                  ["15m", "1h", "1d", "0m", "1s", "100000d", "-5m", "9999d", "9999h"])),
              st.one_of(st.text(max_size=12), st.sampled_from(["UTC", "Europe/Paris", "Mars/X"]))),
    st.builds(lambda d: f"/dpus/{p(d)}", ids),
    st.builds(lambda s, t: f"/count?{q(space=s, timestamp=t)}", ids, TS),
    st.builds(lambda s: f"/?{q(space=s)}", ids),
    st.builds(lambda s: f"/spaces?{q(x=s)}", ids),
)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(paths)
@example("/spaces/A/count?at=0001-01-01T00%3A00%3A00%2B01%3A00")
@example("/spaces/A/series?start=9999-12-30T00:00:00Z&end=9999-12-31T00:00:00Z&bucket=9999d")
@example("/spaces/A%00/count?at=2018-02-26T16:10:00Z")
@example("/count?space=A%00&timestamp=2018-02-26T16:10:00Z")
def test_fuzzed_http_parameters_get_an_answer_never_a_server_error(pipeline, path):
    # Known spaces, so that the history queries reach PostgreSQL (unknown ones stop at 404).
    shared = pipeline.__dict__.setdefault("fuzz", {})
    if not shared.get("placed"):
        pipeline.publish(FLOORPLAN + START)
        pipeline.wait()
        shared["placed"] = True
    try:
        status, body = pipeline.get(path)
    except ValueError:  # an answer that is not JSON
        pytest.fail(f"GET {path} did not answer JSON")
    assert status < 500, (path, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), (path, body)


posted_fields = {
    "dpu_id": st.sampled_from(["283", "423", "", "x" * 300]) | CONTROL_IDS | ids | json_values,
    "timestamp": st.sampled_from(CALENDAR_EDGES) | TS | json_values,
    "direction": st.sampled_from([1, -1, "1", "-1", 0, True]) | json_values,
    "event_id": st.none() | CONTROL_TEXT | json_values,
}
posted_items = st.lists(st.one_of(near_valid(), st.fixed_dictionaries({}, optional=posted_fields),
                                  json_values), max_size=20)


def expected_valid(items: list, max_future_s: float) -> list[int]:
    """Indexes of the items a worker would count, by the same definition the view uses."""
    from pipeline.models import Invalid, event_from_obj

    valid = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, dict):
                event_from_obj(item, now_us(), max_future_s)
                valid.append(i)
        except Invalid:
            pass
    return valid


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(posted_items)
def test_fuzzed_post_events_accepts_exactly_the_valid_items_never_a_server_error(pipeline,
                                                                                  items):
    body = orjson.dumps(items)
    items = orjson.loads(body)  # as the view reads them (NaN became null)
    valid = expected_valid(items, pipeline.settings.max_future_s)
    before = pipeline.sql("SELECT count(*) FROM dpu_log")[0][0]
    status, answer = pipeline.post("/events", body)
    assert status == 202, (items, status, answer)
    assert answer["accepted"] == len(valid), (items, answer)
    assert [r["index"] for r in answer["rejected"]] == \
        [i for i in range(len(items)) if i not in valid], (items, answer)
    assert all(r["reason"] for r in answer["rejected"])
    assert not [i for i in valid if must_refuse(items[i])], items
    # Published are exactly the accepted ones: each is one row of the events log.
    poll(lambda: pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == before + len(valid)
         or None, timeout=30, what=f"{len(valid)} more dpu_log rows")


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


NUL_RECORDS = [
    (b"28\x003", {"dpu_id": "283", "timestamp": "2018-02-26T16:10:00Z", "direction": 1}),
    (b"283", {"dpu_id": "28\x003", "timestamp": "2018-02-26T16:10:00Z", "direction": 1}),
    (b"283", {"dpu_id": "283", "timestamp": "2018-02-26T16:10:00Z", "direction": 1,
              "event_id": "e\x00"}),
    (b"283", {"dpu_id": "283", "timestamp": "0001-01-01T00:00:00+01:00", "direction": 1}),
    (b"\xff\xfe", {"dpu_id": "283", "timestamp": "2018-02-26T16:10:00Z", "direction": 1}),
]
"""Records on the topic itself, past any HTTP check: NUL in the key, in dpu_id and in event_id,
an instant before 1970, a key that is not UTF-8. On 04e1813 the NUL key stalled the dpu_log
sink for good (1,299 events behind after 120 s)."""


def test_records_postgresql_cannot_store_never_stall_a_sink(pipeline, sample_csv):
    events, _ = read_events(str(sample_csv))
    pipeline.publish(FLOORPLAN + START + events[:250])
    pipeline.send_raw("dpu-events", [(k, orjson.dumps(v)) for k, v in NUL_RECORDS])
    pipeline.send_raw("dpu-events", [(b"283", orjson.dumps(  # 1970 itself is valid
        {"dpu_id": "283", "timestamp": "1970-01-01T00:00:00Z", "direction": 1}))])
    pipeline.publish(events[250:])
    pipeline.wait(timeout=120)
    assert pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == len(events) + 6
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry")[0][0] == len(events) + 1
    reasons = [r for (r,) in pipeline.sql("SELECT reason FROM dpu_rejects")]
    assert len(reasons) == len(NUL_RECORDS), reasons
    assert (pipeline.count("A"), pipeline.count("B")) == (31, 18)
    # The 1970 event counts on its DPU (it has no placement then, so in no space).
    assert pipeline.sql("SELECT count(*) FROM dpu_telemetry WHERE event_ts = "
                        "'1970-01-01T00:00:00Z'")[0][0] == 1


def test_a_row_postgresql_refuses_is_filed_and_the_rest_written(pipeline):
    """The sink itself, on the real database: a batch holding a row PostgreSQL refuses (a NUL
    in text) writes the other rows and files that record in dpu_rejects."""
    import asyncio

    from sinks.base import RejectSource
    from sinks.postgres import PostgresSink

    sink = PostgresSink("dpu_log", pipeline.settings.database_url, {
        "log": "INSERT INTO dpus (dpu_id) VALUES (%s) ON CONFLICT DO NOTHING"})
    ids = [f"sink-{i}" for i in range(50)]
    ids[17] = "sink-\x00-17"
    for i, dpu in enumerate(ids):
        sink.add(("log", (dpu,)), RejectSource("dpu-events", 3, 1000 + i, dpu.encode(),
                                               key=f"key-{i}"))
    asyncio.run(sink.flush())
    written = {d for (d,) in pipeline.sql("SELECT dpu_id FROM dpus WHERE dpu_id LIKE %s",
                                          ("sink-%",))}
    assert written == set(ids) - {ids[17]}
    filed = pipeline.sql("SELECT source_offset, reason, raw, record_key FROM dpu_rejects")
    assert [(o, bytes(raw), key) for o, _, raw, key in filed] == [(1017, ids[17].encode(),
                                                                   "key-17")]
    assert "NUL" in filed[0][1] and sink.stats.rejected == 1
