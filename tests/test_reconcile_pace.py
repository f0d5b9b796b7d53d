"""The reconciler's share of the database's time during a backlog (``DPU_RECONCILE_SHARE``), in
rounds of ``ROUND_S``."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.reconcile import ROUND_S, pause_after, reconcile_for
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


class Spaces:
    """Dirty spaces that each take ``took_s`` of a fake clock to recompute."""

    def __init__(self, left: int, took_s: float) -> None:
        self.left, self.took_s, self.now, self.calls = left, took_s, 0.0, 0

    async def one(self) -> int:
        self.calls += 1
        if not self.left:
            return 0
        self.left -= 1
        self.now += self.took_s
        return 1


def test_a_round_takes_spaces_until_its_time_is_up():
    spaces = Spaces(left=100, took_s=0.02)
    assert asyncio.run(reconcile_for(0.05, spaces.one, lambda: spaces.now)) == 3
    assert spaces.left == 97


def test_a_round_takes_one_space_however_long_it_takes():
    spaces = Spaces(left=100, took_s=2.0)
    assert asyncio.run(reconcile_for(ROUND_S, spaces.one, lambda: spaces.now)) == 1


def test_a_round_ends_when_no_space_is_left_to_take():
    spaces = Spaces(left=2, took_s=0.001)
    assert asyncio.run(reconcile_for(ROUND_S, spaces.one, lambda: spaces.now)) == 2
    assert spaces.calls == 3
