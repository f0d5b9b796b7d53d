import orjson
import pytest

from pipeline.models import DailyReset, DpuEvent, Placement, Reject, Reset, SpaceSign, \
    parse_event, parse_placement, parse_reset
from pipeline.timeutil import iso, parse_ts

NOW = parse_ts("2026-11-27T12:00:00Z")


def event(obj, **kw):
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return parse_event(raw, now_us=NOW, max_bytes=kw.get("max_bytes", 4096), max_future_s=86400)


@pytest.mark.parametrize("direction", [1, -1, "1", "-1"])
def test_event_accepts_the_documented_direction_forms(direction):
    e = event({"dpu_id": 423, "timestamp": "2018-02-24T08:45:21.893Z", "direction": direction})
    assert e == DpuEvent("423", parse_ts("2018-02-24T08:45:21.893Z"), int(direction))


def test_timestamp_without_offset_is_utc_and_offsets_are_honoured():
    assert parse_ts("2018-02-24T08:45:21.893") == parse_ts("2018-02-24T08:45:21.893Z")
    assert parse_ts("2018-02-24T09:45:21.893+01:00") == parse_ts("2018-02-24T08:45:21.893Z")
    assert iso(parse_ts("2018-02-24T08:45:21.893Z")) == "2018-02-24T08:45:21.893Z"


def test_event_id_is_kept():
    e = event({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": 1,
               "event_id": "abc"})
    assert e.event_id == "abc"


@pytest.mark.parametrize("obj,reason", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    ({"timestamp": "2018-02-24T08:45:21Z", "direction": 1}, "missing field 'dpu_id'"),
    ({"dpu_id": "1", "direction": 1}, "missing field 'timestamp'"),
    ({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z"}, "missing field 'direction'"),
    ({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": 2}, "direction must be 1 or -1"),
    ({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": True}, "direction must be 1 or -1"),
    ({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": "0"}, "direction must be 1 or -1"),
    ({"dpu_id": True, "timestamp": "2018-02-24T08:45:21Z", "direction": 1}, "dpu_id must be"),
    ({"dpu_id": "", "timestamp": "2018-02-24T08:45:21Z", "direction": 1}, "dpu_id is empty"),
    ({"dpu_id": "1", "timestamp": "yesterday", "direction": 1}, "unparsable timestamp"),
    ({"dpu_id": "1", "timestamp": 1519461921, "direction": 1}, "must be an ISO 8601 string"),
    ({"dpu_id": "1", "timestamp": "2026-11-29T12:00:01Z", "direction": 1}, "ahead of the clock"),
])
def test_invalid_events_become_rejects_with_a_reason(obj, reason):
    result = event(obj)
    assert isinstance(result, Reject)
    assert reason in result.reason


def test_oversized_record_is_rejected_before_parsing():
    result = event({"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": 1,
                    "pad": "x" * 5000})
    assert isinstance(result, Reject) and "exceeds" in result.reason


def test_event_within_24h_ahead_is_accepted():
    assert isinstance(event({"dpu_id": "1", "timestamp": "2026-11-28T11:59:00Z",
                             "direction": 1}), DpuEvent)


def placement(obj):
    return parse_placement(orjson.dumps(obj), max_bytes=4096)


def test_placement_parses_spaces_and_signs():
    p = placement({"dpu_id": "423", "doorway_id": "Z", "installed_at": "2018-02-01T00:00:00Z",
                   "spaces": [{"space_id": "A", "direction": 1}, {"space_id": "B", "direction": "-1"}]})
    assert p == Placement("423", parse_ts("2018-02-01T00:00:00Z"),
                          (SpaceSign("A", 1), SpaceSign("B", -1)), "Z")


def test_uninstall_placement_may_omit_doorway():
    p = placement({"dpu_id": "423", "installed_at": "2018-03-01T00:00:00Z", "spaces": []})
    assert isinstance(p, Placement) and p.spaces == () and p.doorway_id is None


@pytest.mark.parametrize("obj,reason", [
    ({"dpu_id": "1", "installed_at": "2018-03-01T00:00:00Z", "spaces": [{"space_id": "A", "direction": 1}]},
     "missing field 'doorway_id'"),
    ({"dpu_id": "1", "doorway_id": "Z", "installed_at": "2018-03-01T00:00:00Z", "spaces": "A"},
     "spaces must be a list"),
    ({"dpu_id": "1", "doorway_id": "Z", "installed_at": "2018-03-01T00:00:00Z",
      "spaces": [{"space_id": "A", "direction": 1}, {"space_id": "A", "direction": -1}]},
     "appears twice"),
    ({"dpu_id": "1", "doorway_id": "Z", "installed_at": "2018-03-01T00:00:00Z",
      "spaces": [{"space_id": s, "direction": 1} for s in "ABC"]}, "at most two"),
])
def test_invalid_placements_are_rejected(obj, reason):
    result = placement(obj)
    assert isinstance(result, Reject) and reason in result.reason


def reset(obj):
    return parse_reset(orjson.dumps(obj), max_bytes=4096)


def test_reset_and_daily_reset():
    assert reset({"space_id": "A", "at": "2018-02-24T08:00:00Z", "count": 20}) == \
        Reset("A", parse_ts("2018-02-24T08:00:00Z"), 20)
    assert reset({"space_id": "A", "daily_reset": {"time": "04:00", "tz": "America/New_York"}}) == \
        DailyReset("A", "04:00", "America/New_York", 0)
    assert reset({"space_id": "A", "daily_reset": None}) == DailyReset("A", None, "UTC")


@pytest.mark.parametrize("obj,reason", [
    ({"space_id": "A", "at": "2018-02-24T08:00:00Z"}, "missing field 'count'"),
    ({"space_id": "A", "at": "2018-02-24T08:00:00Z", "count": -1}, "between 0"),
    ({"space_id": "A", "daily_reset": {"time": "25:00", "tz": "UTC"}}, "HH:MM"),
    ({"space_id": "A", "daily_reset": {"time": "04:00", "tz": "Mars/Olympus"}}, "unknown time zone"),
])
def test_invalid_resets_are_rejected(obj, reason):
    result = reset(obj)
    assert isinstance(result, Reject) and reason in result.reason


@pytest.mark.parametrize("obj,reason", [
    ({"dpu_id": "4\x0023", "timestamp": "2018-02-24T08:45:21Z", "direction": 1},
     "dpu_id holds a control character (U+0000)"),
    ({"dpu_id": "423", "timestamp": "2018-02-24T08:45:21Z", "direction": 1, "event_id": "\x00"},
     "event_id holds a control character (U+0000)"),
    ({"dpu_id": "423\x1f", "timestamp": "2018-02-24T08:45:21Z", "direction": 1},
     "dpu_id holds a control character (U+001F)"),
    ({"dpu_id": "423", "timestamp": "0001-01-01T00:00:00+01:00", "direction": 1},
     "timestamp is before 1970-01-01T00:00:00Z"),
    ({"dpu_id": "423", "timestamp": "1969-12-31T23:59:59Z", "direction": 1},
     "timestamp is before 1970-01-01T00:00:00Z"),
])
def test_control_characters_and_instants_outside_1970_to_now_plus_24h_are_rejected(obj, reason):
    result = event(obj)
    assert isinstance(result, Reject) and result.reason == reason


def test_placements_and_resets_refuse_pre_1970_instants_and_odd_zones_without_raising():
    p = placement({"dpu_id": "423", "installed_at": "0001-01-01T00:00:00+23:59", "spaces": []})
    assert isinstance(p, Reject) and p.reason == "installed_at is before 1970-01-01T00:00:00Z"
    r = reset({"space_id": "A", "at": "0001-01-01T00:00:00Z", "count": 1})
    assert isinstance(r, Reject) and r.reason == "at is before 1970-01-01T00:00:00Z"
    z = reset({"space_id": "A", "daily_reset": {"time": "04:00", "tz": "x" * 300}})
    assert isinstance(z, Reject) and "unknown time zone" in z.reason  # not an OSError
