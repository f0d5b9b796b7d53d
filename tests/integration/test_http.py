"""The HTTP view: historical answers, series, DPUs, ingestion and the prototype's endpoints."""

from __future__ import annotations

import urllib.parse

import orjson
import pytest

from pipeline.files import read_events
from pipeline.timeutil import iso
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
