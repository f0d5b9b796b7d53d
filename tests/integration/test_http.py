"""The HTTP view: historical answers, series, DPUs, ingestion and the prototype's endpoints."""

from __future__ import annotations

import urllib.parse

import orjson
import pytest

from pipeline.files import read_events
from pipeline.timeutil import US, iso, now_us
from tests.integration.conftest import poll
from tests.integration.test_end_to_end import FLOORPLAN, START


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@pytest.fixture
def sample(pipeline, sample_csv):
    events, _ = read_events(str(sample_csv))
    pipeline.publish(FLOORPLAN + START)
    pipeline.publish(events)
    pipeline.wait()
    return pipeline, events


def test_as_of_answers_and_series_over_the_sample(sample):
    pipeline, events = sample
    at = "2018-02-26T16:10:00Z"
    for space, expected in (("A", 21), ("B", 13)):
        status, body = pipeline.get(f"/spaces/{space}/count?at={q(at)}")
        assert (status, body) == (200, {"space_id": space, "count": expected,
                                        "at": "2018-02-26T16:10:00.000Z"})
    assert pipeline.get("/spaces/A/count?at=2030-01-01T00:00:00Z")[1]["count"] == 31
    assert pipeline.get("/spaces/A/count?at=2018-02-24T08:45:00Z")[1]["count"] == 20  # the reset
    assert pipeline.get("/spaces/A/count?at=2018-01-01T00:00:00Z")[1]["count"] == 0
    assert pipeline.get("/count?space=A&timestamp=" + q(at))[1] == {"status": "OK", "count": 21}
    assert pipeline.get("/count?space=B")[1] == {"status": "OK", "count": 18}
    assert pipeline.get("/?space=A")[1] == {"status": "OK", "count": 31}
    assert pipeline.get("/?space=Q")[1] == {"status": "OK", "count": None}
    assert pipeline.cli("count", "A", "--at", at).stdout.strip() == \
        '{"space_id":"A","count":21,"at":"2018-02-26T16:10:00.000Z"}'

    status, body = pipeline.get("/spaces/A/series?start=2018-02-24T00:00:00Z"
                                "&end=2018-03-03T00:00:00Z&bucket=1d")
    assert status == 200
    days = body["series"]
    assert len(days) == 7 and days[0]["start"] == "2018-02-24T00:00:00.000Z"
    assert days[-1]["count"] == 31
    # Every crossing into or out of A is an entry or an exit of A; min <= count <= max.
    a_moves = sum(1 for e in events if e.dpu_id in ("283", "423"))
    assert sum(d["entries"] + d["exits"] for d in days) == a_moves
    assert all(d["min"] <= d["count"] <= d["max"] for d in days)
    by_hour = pipeline.get("/spaces/A/series?start=2018-02-26T15:00:00Z"
                           "&end=2018-02-26T17:00:00Z&bucket=10m")[1]["series"]
    assert len(by_hour) == 12
    at_1610 = [b for b in by_hour if b["start"] == "2018-02-26T16:00:00.000Z"][0]
    assert at_1610["count"] == pipeline.get(
        "/spaces/A/count?at=2018-02-26T16:09:59.999999Z")[1]["count"]
    local = pipeline.get("/spaces/A/series?start=2018-02-24T00:00:00Z&end=2018-02-26T00:00:00Z"
                         "&bucket=1d&tz=America/New_York")[1]["series"]
    assert local[0]["start"] == "2018-02-23T05:00:00.000Z"  # local midnight, UTC-5


@pytest.mark.parametrize("path,fragment", [
    ("/spaces/A/count?at=yesterday", "unparsable timestamp"),
    ("/spaces/A/series?start=2018-02-25T00:00:00Z&end=2018-02-24T00:00:00Z", "start must be before end"),
    ("/spaces/A/series?start=2018-02-24T00:00:00Z&end=2018-02-25T00:00:00Z&bucket=7y", "unknown bucket"),
    ("/spaces/A/series?start=2000-01-01T00:00:00Z&end=2018-02-25T00:00:00Z&bucket=1m", "too many points"),
    ("/spaces/A/series?start=2018-02-24T00:00:00Z&end=2018-02-25T00:00:00Z&tz=Mars/Base", "unknown time zone"),
    ("/spaces/A/series?end=2018-02-25T00:00:00Z", "missing parameter 'start'"),
    ("/count?timestamp=2018-02-25T00:00:00Z", "missing parameter 'space'"),
])
def test_bad_parameters_get_400_with_a_json_error(pipeline, path, fragment):
    pipeline.publish(FLOORPLAN)
    pipeline.wait()
    status, body = pipeline.get(path)
    assert status == 400 and fragment in body["error"]


def test_dpu_view_and_unknown_ids(sample):
    pipeline, events = sample
    status, body = pipeline.get("/dpus/423")
    n423 = [e for e in events if e.dpu_id == "423"]
    assert status == 200
    assert body["ins"] == sum(e.direction == 1 for e in n423)
    assert body["net"] == body["ins"] - body["outs"] == sum(e.direction for e in n423)
    assert body["placement"]["doorway_id"] == "Z"
    assert body["last_event_at"] == iso(max(e.ts for e in n423))
    assert pipeline.get("/dpus/nope")[0] == 404
    assert pipeline.get("/spaces/nope/count?at=2018-02-26T16:10:00Z")[0] == 404
    assert pipeline.get("/spaces/nope/series?start=2018-02-24T00:00:00Z"
                        "&end=2018-02-25T00:00:00Z")[0] == 404


@pytest.mark.settings(ingest_token="s3cret")
def test_post_events_validates_publishes_and_requires_the_token(pipeline):
    pipeline.publish(FLOORPLAN)
    pipeline.wait()
    body = b'{"dpu_id": 283, "timestamp": "2018-02-25T10:00:00Z", "direction": "1"}\n' \
           b'{"dpu_id": 283, "timestamp": "2018-02-25T10:00:01Z", "direction": 5}\n' \
           b'{"dpu_id": 283, "timestamp": "2018-02-25T10:00:02Z", "direction": 1}\n'
    assert pipeline.post("/events", body)[0] == 401
    assert pipeline.post("/events", body, token="wrong")[0] == 401
    status, answer = pipeline.post("/events", body, token="s3cret")
    assert status == 202 and answer["accepted"] == 2
    assert answer["rejected"] == [{"index": 1, "reason": "direction must be 1 or -1, got '5'"}]
    array = orjson.dumps([{"dpu_id": "283", "timestamp": "2018-02-25T11:00:00Z", "direction": -1}])
    assert pipeline.post("/events", array, token="s3cret")[1]["accepted"] == 1
    one = b'{"dpu_id": "283", "timestamp": "2018-02-25T12:00:00Z", "direction": 1}'
    assert pipeline.post("/send", one, token="s3cret") == (202, {"status": "OK"})
    assert pipeline.post("/send", b"{}", token="s3cret")[0] == 400
    assert pipeline.post("/events", b"", token="s3cret")[0] == 400
    pipeline.wait()
    assert poll(lambda: pipeline.count("A") == 2 or None, what="A = 2")


def ev(dpu_id="283", ts="2018-02-25T10:00:00Z", direction=1, **extra):
    return {"dpu_id": dpu_id, "timestamp": ts, "direction": direction, **extra}


NUL_DPU = ev("28\x003")
NUL_EVENT_ID = ev(event_id="e\x00")
YEAR_1 = ev(ts="0001-01-01T00:00:00+01:00")


def test_post_events_refuses_control_characters_and_calendar_edges_by_index(pipeline, tmp_path):
    pipeline.publish(FLOORPLAN)
    pipeline.wait()
    for item, reason in ((NUL_DPU, "dpu_id holds a control character (U+0000)"),
                         (NUL_EVENT_ID, "event_id holds a control character (U+0000)"),
                         (YEAR_1, "timestamp is before 1970-01-01T00:00:00Z")):
        assert pipeline.post("/events", orjson.dumps(item)) == (
            202, {"accepted": 0, "rejected": [{"index": 0, "reason": reason}]})
        assert pipeline.post("/send", orjson.dumps(item)) == (
            400, {"status": "error", "error": reason})
    batch = [ev(ts="2018-02-25T10:00:01Z"), NUL_DPU, ev(ts="2018-02-25T10:00:02Z", event_id="a"),
             NUL_EVENT_ID, YEAR_1, ev("423", "2018-02-25T10:00:03Z", -1),
             ev(ts="9999-12-31T23:59:59-23:59")]
    status, answer = pipeline.post("/events", orjson.dumps(batch))
    assert status == 202 and answer["accepted"] == 3, answer
    assert [r["index"] for r in answer["rejected"]] == [1, 3, 4, 6]
    assert answer["rejected"][3]["reason"] == "timestamp is more than 24 h ahead of the clock"

    # The CLI reads the same rows alike: each bad one reported on a line, the valid ones sent.
    csv = tmp_path / "events.csv"
    csv.write_bytes(b"timestamp,direction,dpu_id\n2018-02-25T11:00:00Z,1,283\n"
                    b"0001-01-01T00:00:00+01:00,1,283\n9999-12-31T23:59:59-23:59,1,283\n"
                    b"2018-02-25T11:00:01Z,1,28\x003\n2018-02-25T11:00:02Z,1,283\x1f\n"
                    b"2018-02-25T11:00:03Z,1,283\n")
    proc = pipeline.cli("produce", str(csv))
    assert "Traceback" not in proc.stderr and "published 2 events" in proc.stdout
    assert [line.strip() for line in proc.stderr.splitlines() if "line" in line] == [
        "line 3: timestamp is before 1970-01-01T00:00:00Z",
        "line 4: timestamp is more than 24 h ahead of the clock",
        "line 5: dpu_id holds a control character (U+0000)",
        "line 6: dpu_id holds a control character (U+001F)"]

    # Exactly the valid ones are counted: 2 + 2 into A from 283, one out of A (-1 of 423).
    pipeline.wait()
    assert pipeline.count("A") == 2 + 2 - 1 and pipeline.count("B") == 1
    assert pipeline.sql("SELECT count(*) FROM dpu_log")[0][0] == 5
    assert pipeline.sql("SELECT count(*) FROM dpu_rejects")[0][0] == 0  # none even published
    assert pipeline.get("/dpus/283")[1]["ins"] == 4


def test_calendar_edge_and_control_character_parameters_get_400_never_500(pipeline):
    pipeline.publish(FLOORPLAN + START)  # A is a known space: the queries reach the database
    pipeline.wait()
    for path, fragment in (
            ("/spaces/A/count?at=0001-01-01T00:00:00Z", "parameter 'at' is before 1970"),
            ("/spaces/A/count?at=" + q("0001-01-01T00:00:00+01:00"), "parameter 'at' is before"),
            ("/spaces/A/count?at=" + q("1970-01-01T00:00:00+00:01"), "parameter 'at' is before"),
            ("/spaces/A/count?at=" + q("9999-12-31T23:59:59-23:59"), "parameter 'at' is after"),
            ("/spaces/A/series?start=0001-01-01T00:00:00Z&end=2018-02-25T00:00:00Z",
             "parameter 'start' is before 1970"),
            ("/spaces/A/series?start=2018-02-24T00:00:00Z&end=9999-12-31T23:59:59Z",
             "parameter 'end' is after 9999-12-31T00:00:00Z"),
            ("/spaces/A/series?start=9999-12-30T00:00:00Z&end=9999-12-31T00:00:00Z&bucket=9999d",
             "the buckets reach past 9999-12-31"),
            ("/count?space=A&timestamp=0001-01-01T00:00:00Z", "parameter 'timestamp' is before"),
            ("/spaces/A%00/count?at=2018-02-25T00:00:00Z", "space_id holds a control character"),
            ("/spaces/A%1F/series?start=2018-02-24T00:00:00Z&end=2018-02-25T00:00:00Z",
             "space_id holds a control character (U+001F)"),
            ("/count?space=A%00&timestamp=2018-02-25T00:00:00Z", "space holds a control"),
            ("/?space=A%00", "space holds a control character (U+0000)")):
        status, body = pipeline.get(path)
        assert status == 400 and fragment in body["error"], (path, status, body)
    # The bounds themselves answer, and so does a query past the records' 24 h horizon.
    assert pipeline.get("/spaces/A/count?at=1970-01-01T00:00:00Z") == (
        200, {"space_id": "A", "count": 0, "at": "1970-01-01T00:00:00.000Z"})
    assert pipeline.get("/spaces/A/count?at=9999-12-31T00:00:00Z")[1]["count"] == 20
    assert pipeline.get("/spaces/A/count?at=" + q(iso(now_us() + 7 * 86400 * US)))[0] == 200
    status, body = pipeline.get("/spaces/A/series?start=9999-12-28T00:00:00Z"
                                "&end=9999-12-30T00:00:00Z&bucket=1d&tz=Pacific/Kiritimati")
    assert status == 200 and body["series"][-1]["count"] == 20
    # UTC+14's day that holds the last instant ends in year 10000: refused, not a 500.
    status, body = pipeline.get("/spaces/A/series?start=9999-12-28T00:00:00Z"
                                "&end=9999-12-31T00:00:00Z&bucket=1d&tz=Pacific/Kiritimati")
    assert status == 400 and "the buckets reach past" in body["error"]
