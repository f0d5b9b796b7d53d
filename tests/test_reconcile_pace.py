"""The reconciler's share of the database's time during a backlog (``DPU_RECONCILE_SHARE``)."""

from __future__ import annotations

import pytest

from pipeline.reconcile import pause_after
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
