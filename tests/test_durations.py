"""Every duration setting (``DPU_*_S``) is checked alike: a user's bad value is one clear line."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.settings import DURATIONS, Settings, SettingsError, variable


def test_every_duration_setting_is_checked():
    durations = {f.name for f in dataclasses.fields(Settings) if f.name.endswith("_s")}
    assert durations == set(DURATIONS)
    assert all(Settings.from_env({variable(name): "7"}) != Settings() for name in DURATIONS)


@pytest.mark.parametrize("name", sorted(DURATIONS))
@pytest.mark.parametrize("raw", ["-1", "nan", "inf", "-inf"])
def test_a_negative_or_endless_duration_is_refused_with_its_variable_named(name, raw):
    refused = f"^{variable(name)} must be a finite number of seconds"
    with pytest.raises(SettingsError, match=refused):
        Settings.from_env({variable(name): raw})


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_zero_is_taken_where_it_means_something(name):
    if DURATIONS[name]:
        assert getattr(Settings.from_env({variable(name): "0"}), name) == 0
    else:
        with pytest.raises(SettingsError, match=f"^{variable(name)} .* more than 0, got 0.0"):
            Settings.from_env({variable(name): "0"})
