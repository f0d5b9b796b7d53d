"""The reconciler's share of the database's time during a backlog (``DPU_RECONCILE_SHARE``)."""

from __future__ import annotations

import pytest

from pipeline.reconcile import RoundSize, pause_after
from pipeline.settings import Settings, SettingsError


@pytest.mark.parametrize("share", [0.1, 0.2, 0.5, 1.0])
def test_rounds_and_pauses_leave_the_reconciler_its_share_of_the_time(share):
    round_s = 0.3
    assert round_s / (round_s + pause_after(round_s, share)) == pytest.approx(share)


def test_the_default_share_leaves_the_live_sinks_most_of_the_database():
    assert Settings().reconcile_share == 0.2
    assert Settings.from_env({"DPU_RECONCILE_SHARE": "0.5"}).reconcile_share == 0.5


@pytest.mark.parametrize("raw", ["0", "-0.1", "1.5"])
def test_a_share_outside_0_to_1_is_refused_with_its_variable_named(raw):
    with pytest.raises(SettingsError, match="DPU_RECONCILE_SHARE"):
        Settings.from_env({"DPU_RECONCILE_SHARE": raw})


def test_rounds_shrink_to_their_time_after_a_burst_and_grow_back_when_spaces_are_cheap():
    size = RoundSize(round_s=0.1, first=20, most=200)
    size.took(20, 1.15)  # after a burst: thousands of rows a space
    assert size.spaces == 1
    size.took(1, 0.02)
    assert size.spaces == 5
    size.took(5, 0.001)  # live traffic: a few rows a space
    assert size.spaces == 200
    size.took(0, 3.0)  # nothing recomputed: nothing learnt
    assert size.spaces == 200


def test_with_no_event_counted_during_a_round_the_reconciler_does_not_pause():
    assert pause_after(0.3, 0.2, live=False) == 0.0
    assert pause_after(0.3, 0.2, live=True) == pytest.approx(1.2)


def test_events_counted_so_far_reads_the_counter():
    from pipeline.metrics import Metrics

    m = Metrics()
    before = m.events_counted_so_far()
    m.events_counted.inc(3)
    assert m.events_counted_so_far() == before + 3
