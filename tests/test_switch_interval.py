"""The worker's GIL switch interval (``DPU_SWITCH_INTERVAL_S``): the consumer's thread gets the
GIL back from the event loop within it."""

from __future__ import annotations

import sys

import pytest

from pipeline.settings import Settings, SettingsError
from pipeline.worker import share_the_gil


def test_the_default_is_shorter_than_cpythons_and_reaches_child_workers():
    assert Settings().switch_interval_s == 0.001 < 0.005
    custom = Settings.from_env({"DPU_SWITCH_INTERVAL_S": "0.005"})
    assert custom.switch_interval_s == 0.005
    assert Settings.from_env(custom.to_env()).switch_interval_s == 0.005


@pytest.mark.parametrize("raw", ["0", "-0.001", "nan", "inf"])
def test_an_interval_that_is_not_positive_is_refused_with_its_variable_named(raw):
    with pytest.raises(SettingsError, match="DPU_SWITCH_INTERVAL_S"):
        Settings.from_env({"DPU_SWITCH_INTERVAL_S": raw})


def test_the_worker_applies_it():
    before = sys.getswitchinterval()
    try:
        share_the_gil(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
