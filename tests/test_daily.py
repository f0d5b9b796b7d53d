from pipeline.timeutil import iso, parse_ts
from tables.daily import DailySchedule


def test_wall_clock_time_is_kept_across_daylight_saving_changes():
    s = DailySchedule("04:00", "America/New_York", 0, since=parse_ts("2026-03-06T12:00:00Z"))
    due = [iso(t) for t in s.due(parse_ts("2026-03-10T12:00:00Z"))]
    # EST (UTC-5) until 8 March 2026, EDT (UTC-4) from then on.
    assert due == ["2026-03-07T09:00:00.000Z", "2026-03-08T08:00:00.000Z",
                   "2026-03-09T08:00:00.000Z", "2026-03-10T08:00:00.000Z"]
    autumn = DailySchedule("04:00", "Europe/Paris", 0, since=parse_ts("2026-10-24T00:00:00Z"))
    assert [iso(t) for t in autumn.due(parse_ts("2026-10-26T12:00:00Z"))] == [
        "2026-10-24T02:00:00.000Z", "2026-10-25T03:00:00.000Z", "2026-10-26T03:00:00.000Z"]


def test_only_instants_after_since_and_last_and_not_after_now_are_due():
    s = DailySchedule("00:00", "UTC", 5, since=parse_ts("2026-01-01T00:00:00Z"))
    assert s.due(parse_ts("2026-01-01T00:00:00Z")) == []  # the setting's own instant is not after it
    assert [iso(t) for t in s.due(parse_ts("2026-01-03T00:00:00Z"))] == [
        "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]
    later = DailySchedule("00:00", "UTC", 5, since=s.since, last=parse_ts("2026-01-02T00:00:00Z"))
    assert [iso(t) for t in later.due(parse_ts("2026-01-03T00:00:00Z"))] == [
        "2026-01-03T00:00:00.000Z"]
    assert later.is_instant(parse_ts("2026-01-05T00:00:00Z"))
    assert not later.is_instant(parse_ts("2026-01-05T00:00:01Z"))


def test_a_skipped_local_time_resolves_to_one_instant_per_day():
    s = DailySchedule("02:30", "America/New_York", 0, since=parse_ts("2026-03-07T12:00:00Z"))
    due = s.due(parse_ts("2026-03-09T12:00:00Z"))
    assert [iso(t) for t in due] == ["2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z"]
    assert all(s.is_instant(t) for t in due)


def test_round_trip():
    s = DailySchedule("04:00", "UTC", 3, since=1, last=2)
    assert DailySchedule.from_value(s.to_value()) == s


def test_a_daily_reset_given_since_applies_from_then_and_else_from_when_it_was_recorded():
    from pipeline.models import DailyReset, reset_from_obj
    from tables import counting
    from tests.simulator import DictStore

    now = parse_ts("2026-03-10T12:00:00Z")
    backfill = reset_from_obj({"space_id": "A", "daily_reset": {
        "time": "04:00", "tz": "UTC", "since": "2026-03-01T00:00:00Z"}}, now)
    assert backfill == DailyReset("A", "04:00", "UTC", 0, parse_ts("2026-03-01T00:00:00Z"))
    recorded_at = parse_ts("2026-03-10T11:00:00Z")
    for setting, first_due in ((backfill, "2026-03-01T04:00:00.000Z"),
                               (DailyReset("A", "04:00", "UTC"), None)):
        db = DictStore()
        counting.on_reset(db, setting, counting.Source(0, 0, recorded_at), now=recorded_at)
        schedule = DailySchedule.from_value(db.load("daily-resets", "A"))
        due = [iso(t) for t in schedule.due(now)]
        assert (due[0] if due else None) == first_due
        assert len(due) == (10 if first_due else 0)


def test_dpu_spaces_daily_reset_since_publishes_the_setting_with_its_since(monkeypatch):
    from click.testing import CliRunner

    import pipeline.cli as cli
    from pipeline.models import DailyReset

    sent = []
    monkeypatch.setattr(cli, "_publish", lambda settings, records, what: sent.extend(records))
    args = ["spaces", "daily-reset", "A", "--time", "04:00", "--tz", "Europe/Paris"]
    result = CliRunner().invoke(cli.main, [*args, "--since", "2026-11-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert sent == [DailyReset("A", "04:00", "Europe/Paris", 0, parse_ts("2026-11-01T00:00:00Z"))]
    result = CliRunner().invoke(cli.main, ["spaces", "daily-reset", "A", "--off", "--since",
                                           "2026-11-01T00:00:00Z"])
    assert result.exit_code != 0 and "--since goes with --time" in result.output
    result = CliRunner().invoke(cli.main, [*args, "--since", "last month"])
    assert result.exit_code == 1 and "daily_reset.since" in result.output
