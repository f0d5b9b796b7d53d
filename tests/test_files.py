import pytest

from pipeline.files import FileError, read_events, read_placements, read_resets
from pipeline.models import DailyReset, Reset, SpaceSign
from pipeline.settings import Settings, SettingsError
from pipeline.timeutil import parse_ts


def test_the_real_sample_parses_whole(sample_csv):
    events, bad = read_events(str(sample_csv))
    assert bad == []
    assert len(events) == 563  # CRLF endings and both quoting styles of direction
    assert {e.dpu_id for e in events} == {"283", "423"}
    assert events[0].ts == parse_ts("2018-02-24T08:45:21.893Z") and events[0].direction == 1


def test_json_lines_and_arrays_and_bad_rows_with_line_numbers(tmp_path):
    lines = tmp_path / "e.jsonl"
    lines.write_text('{"dpu_id": 1, "timestamp": "2018-02-24T08:45:21Z", "direction": "-1"}\n'
                     '\n{"dpu_id": 1, "timestamp": "nope", "direction": 1}\n{oops\n')
    events, bad = read_events(str(lines))
    assert [e.direction for e in events] == [-1]
    assert [(b.line, b.reason) for b in bad] == [
        (3, "timestamp: unparsable timestamp 'nope'"), (4, "not valid JSON")]
    array = tmp_path / "e.json"
    array.write_text('[{"dpu_id": "9", "timestamp": "2018-02-24T08:45:21Z", "direction": 1}]')
    assert read_events(str(array))[0][0].dpu_id == "9"


def test_csv_missing_columns_and_missing_files(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("timestamp,dpu_id\n2018-02-24T08:45:21Z,1\n")
    events, bad = read_events(str(f))
    assert events == [] and "direction" in bad[0].reason and bad[0].line == 2
    with pytest.raises(FileError, match="no such file"):
        read_events(str(tmp_path / "absent.csv"))


def test_dpu_location_csv_groups_rows_into_placements(tmp_path):
    f = tmp_path / "loc.csv"
    f.write_text("dpu_id,space_id,doorway_id,installed,direction\n"
                 "423,A,Z,2018-02-01T00:00:00Z,1\n"
                 "423,B,Z,2018-02-01T00:00:00Z,-1\n"
                 "283,A,X,2018-02-01T00:00:00Z,1\n"
                 "283,,,2018-03-01T00:00:00Z,1\n")
    placements, bad = read_placements(str(f))
    assert bad == []
    by = {(p.dpu_id, p.installed_at): p for p in placements}
    assert by[("423", parse_ts("2018-02-01T00:00:00Z"))].spaces == (SpaceSign("A", 1),
                                                                    SpaceSign("B", -1))
    assert by[("283", parse_ts("2018-03-01T00:00:00Z"))].spaces == ()


def test_resets_csv_and_daily_reset_lines(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("space_id,at,count\nA,2018-02-24T08:00:00Z,20\nB,2018-02-24T08:00:00Z,x\n")
    good, bad = read_resets(str(f))
    assert good == [Reset("A", parse_ts("2018-02-24T08:00:00Z"), 20)] and bad[0].line == 3
    j = tmp_path / "r.jsonl"
    j.write_text('{"space_id": "A", "daily_reset": {"time": "04:00", "tz": "Europe/Paris"}}\n')
    assert read_resets(str(j))[0] == [DailyReset("A", "04:00", "Europe/Paris", 0)]


def test_settings_read_the_environment_once_and_explain_bad_values():
    s = Settings.from_env({"DPU_TOPIC_PREFIX": "t1-", "DPU_WEB_PORT": "7000",
                           "DPU_KAFKA_URL": "kafka://h1:1;h2:2", "DPU_KAFKA_SASL_MECHANISM": "PLAIN"})
    assert s.topic("dpu-events") == "t1-dpu-events" and s.web_port == 7000
    assert s.kafka_bootstrap == "h1:1,h2:2" and s.kafka_extra == {"sasl_mechanism": "PLAIN"}
    assert Settings.from_env(s.to_env()) == s
    with pytest.raises(SettingsError, match="DPU_WEB_PORT must be an integer"):
        Settings.from_env({"DPU_WEB_PORT": "http"})


def test_as_of_plan_covers_every_instant_once():
    """The rollup plan of count(S, T) sums each event in (lo, hi] exactly once."""
    import random

    from pipeline.history import DAY_US, HOUR_US, plan

    rng = random.Random(1)
    base = 1_700_000_000 * 1_000_000 // DAY_US * DAY_US
    for _ in range(3000):
        lo = None if rng.random() < 0.2 else base + rng.randrange(4 * DAY_US)
        hi = (lo or base) + rng.choice([0, 1, HOUR_US - 1, HOUR_US, DAY_US, 3 * DAY_US]) \
            + rng.randrange(2 * DAY_US)
        if rng.random() < 0.3 and lo is not None:  # exact hour and day boundaries
            lo -= lo % HOUR_US
        if rng.random() < 0.3:
            hi -= hi % rng.choice([HOUR_US, DAY_US])
        hi = max(hi, lo or hi)
        probes = [(lo or base - DAY_US) + k for k in (0, 1)] + [hi, hi + 1, hi - 1] + \
            [rng.randrange((lo or base - DAY_US), hi + 2) for _ in range(20)] + \
            [hi - hi % HOUR_US, hi - hi % DAY_US, hi - hi % HOUR_US - 1]
        parts = plan(lo, hi)
        for ts in probes:
            covered = 0
            for source, a, b in parts:
                size = {"raw": None, "hour": HOUR_US, "day": DAY_US}[source]
                if size is None:
                    covered += (a is None or ts > a) and ts <= b
                else:
                    bucket = ts - ts % size
                    covered += (a is None or bucket >= a) and bucket < b
            expected = (lo is None or ts > lo) and ts <= hi
            assert covered == expected, (lo, hi, ts, parts)


def test_rows_with_control_characters_or_out_of_range_instants_are_bad_rows_not_crashes(tmp_path):
    f = tmp_path / "e.csv"
    f.write_bytes(b"timestamp,direction,dpu_id\r\n"
                  b"2018-02-24T08:45:21Z,1,423\r\n"
                  b"0001-01-01T00:00:00+01:00,1,423\r\n"
                  b"9999-12-31T23:59:59-23:59,1,423\r\n"
                  b"2018-02-24T08:45:22Z,1,42\x003\r\n"
                  b"2018-02-24T08:45:23Z,1,423\x1f\r\n"
                  b"2018-02-24T08:45:24Z,1,\t423\r\n"
                  b"1969-12-31T23:59:59.999Z,-1,423\r\n"
                  b"2018-02-24T08:45:25Z,-1, 283 \r\n")
    events, bad = read_events(str(f))
    assert [(e.dpu_id, e.direction) for e in events] == [("423", 1), ("283", -1)]
    assert [(b.line, b.reason) for b in bad] == [
        (3, "timestamp is before 1970-01-01T00:00:00Z"),
        (4, "timestamp is more than 24 h ahead of the clock"),
        (5, "dpu_id holds a control character (U+0000)"),
        (6, "dpu_id holds a control character (U+001F)"),
        (7, "dpu_id holds a control character (U+0009)"),
        (8, "timestamp is before 1970-01-01T00:00:00Z")]


def test_json_lines_with_escaped_nul_and_a_csv_field_over_the_size_limit(tmp_path):
    lines = tmp_path / "e.jsonl"
    lines.write_text('{"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": 1, '
                     '"event_id": "a\\u0000"}\n'
                     '{"dpu_id": "1", "timestamp": "2018-02-24T08:45:21Z", "direction": 1}\n')
    events, bad = read_events(str(lines))
    assert len(events) == 1 and [(b.line, b.reason) for b in bad] == [
        (1, "event_id holds a control character (U+0000)")]
    big = tmp_path / "big.csv"
    big.write_text("timestamp,direction,dpu_id\n" + "x" * 200_000 + ",1,1\n"
                   "2018-02-24T08:45:21Z,1,1\n")
    events, bad = read_events(str(big))
    assert len(events) == 1 and bad[0].line == 2 and "unreadable CSV row" in bad[0].reason


def test_placements_and_resets_files_check_ids_and_instants_alike(tmp_path):
    loc = tmp_path / "loc.csv"
    loc.write_text("dpu_id,space_id,doorway_id,installed,direction\n"
                   "423,A,Z,0001-01-01T00:00:00Z,1\n"
                   "424,A\x1fB,Z,2018-02-01T00:00:00Z,1\n"
                   "425,A,Z,2018-02-01T00:00:00Z,1\n")
    placements, bad = read_placements(str(loc))
    assert [p.dpu_id for p in placements] == ["425"]
    assert sorted((b.line, b.reason) for b in bad) == [
        (2, "installed_at is before 1970-01-01T00:00:00Z"),
        (3, "spaces[0].space_id holds a control character (U+001F)")]
    resets = tmp_path / "r.csv"
    resets.write_text("space_id,at,count\nA,1960-01-01T00:00:00Z,1\nA,2999-01-01T00:00:00Z,1\n"
                      "A\x00,2018-01-01T00:00:00Z,1\nA,2018-01-01T00:00:00Z,1\n")
    good, bad = read_resets(str(resets))
    assert good == [Reset("A", parse_ts("2018-01-01T00:00:00Z"), 1)]
    assert [(b.line, b.reason) for b in bad] == [
        (2, "at is before 1970-01-01T00:00:00Z"), (3, "at is more than 24 h ahead of the clock"),
        (4, "space_id holds a control character (U+0000)")]


def test_stdin_that_is_not_utf8_is_one_file_error(monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"timestamp\n\xff\n")))
    with pytest.raises(FileError, match="not UTF-8"):
        read_events("-")
