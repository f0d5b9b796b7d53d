"""Sensor health: whether a DPU is sending, from its table value (pure logic, no I/O).

A DPU is ``never_seen`` until an event of it is counted, ``silent`` once its latest event (event
time) is older than the quiet period, else ``ok``. The quiet period is one duration for the fleet
(``DPU_SILENT_AFTER_S``, or ``?silent_after=`` per request): opening hours are not modelled, so a
sensor over a door nobody uses at night shows ``silent`` at night.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.timeutil import US, day_of, iso
from tables.dpu_state import DpuState

STATUSES = ("ok", "silent", "never_seen")
"""Every status, in the order the views and metrics list them."""

_DURATION = re.compile(r"^(\d{1,9})(s|m|h|d)?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class BadDuration(ValueError):
    """Not a duration ``silent_after`` understands."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h`` or ``1d`` in seconds (more than zero)."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise BadDuration(f"unknown duration {text[:32]!r}: use a number and s, m, h or d "
                          "(90s, 30m, 2h, 1d)")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def status(last_event_at: int | None, now: int, silent_after_s: float) -> str:
    """The status of a DPU whose latest counted event is at ``last_event_at``."""
    if last_event_at is None:
        return "never_seen"
    return "silent" if now - last_event_at > silent_after_s * US else "ok"


def status_of_value(value: dict[str, Any], now: int, silent_after_s: float) -> str:
    """``status`` straight from a ``dpus`` table value, without decoding all of it."""
    return status(value.get("l"), now, silent_after_s)


def sensor(dpu_id: str, value: dict[str, Any], now: int, silent_after_s: float) -> dict[str, Any]:
    """One DPU as ``GET /dpus`` lists it (``rejects`` is filled in from the database)."""
    state = DpuState.from_value(dpu_id, value)
    current = state.placements.current
    return {
        "dpu_id": dpu_id,
        "status": status(state.last_event_at, now, silent_after_s),
        "last_event_at": iso(state.last_event_at),
        "events_today": state.days.get(day_of(now), 0),
        "ins": state.ins, "outs": state.outs, "net": state.net,
        "placement": None if current is None else current.to_json(),
        "rejects": None,
    }
