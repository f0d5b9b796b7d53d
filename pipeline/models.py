"""Typed, validated records for everything the pipeline reads (SPEC §3).

Parsing never raises on bad input: ``parse_*`` returns either the record or a :class:`Reject`
that carries the raw bytes and a reason a person can read. Agents send rejects to the dead-letter
topic and carry on, so no input can stop a worker or change a count.

What a valid id and a valid record instant are is defined once, by :func:`valid_id` and
:func:`valid_instant`: the workers, ``POST /events``, the CLI's file readers and its one-record
commands all build records through the ``*_from_obj`` functions below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from pipeline.timeutil import MAX_US, US, BadTimestamp, TooLate, iso, now_us as wall_clock_us, \
    parse_ts

MAX_ID_LEN = 128
"""Longest ``dpu_id``, ``space_id``, ``doorway_id`` or ``event_id`` accepted."""
MAX_FUTURE_S = 24 * 3600.0
"""How far ahead of the clock a record's instant may be, by default (``DPU_MAX_FUTURE_S``)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Unicode category Cc: C0 (NUL, and the unit separator that table keys use), DEL and C1."""
_INT_ID_LIMIT = 10 ** MAX_ID_LEN


@dataclass(frozen=True, slots=True)
class DpuEvent:
    """One crossing seen by a DPU."""

    dpu_id: str
    """The sensor that saw the crossing."""
    ts: int
    """When the crossing happened: event time, epoch microseconds UTC."""
    direction: int
    """+1 toward the sensor's face, -1 away from it."""
    event_id: str | None = None
    """Optional unique id: two events with the same id count once."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dpu_id": self.dpu_id, "timestamp": iso(self.ts),
                               "direction": self.direction}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out


@dataclass(frozen=True, slots=True)
class SpaceSign:
    """How a +1 crossing of a DPU changes one space's count."""

    space_id: str
    """The space on one side of the doorway."""
    direction: int
    """+1 or -1: the sign applied to the DPU's direction for this space."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a DPU hangs from ``installed_at`` on (until its next placement)."""

    dpu_id: str
    """The sensor placed."""
    installed_at: int
    """Start of validity, epoch microseconds UTC."""
    spaces: tuple[SpaceSign, ...]
    """Spaces the doorway joins, with their signs; empty when the DPU was taken down."""
    doorway_id: str | None = None
    """The doorway the DPU hangs over; may be omitted when it was taken down."""

    def to_json(self) -> dict[str, Any]:
        return {"dpu_id": self.dpu_id, "doorway_id": self.doorway_id,
                "installed_at": iso(self.installed_at),
                "spaces": [{"space_id": s.space_id, "direction": s.direction}
                           for s in self.spaces]}


@dataclass(frozen=True, slots=True)
class Reset:
    """A space's count set to ``count`` at instant ``at`` (initial populations are resets)."""

    space_id: str
    """The space reset."""
    at: int
    """The reset instant, epoch microseconds UTC; events at exactly this instant are absorbed."""
    count: int
    """The count from ``at`` on, before later events."""

    def to_json(self) -> dict[str, Any]:
        return {"space_id": self.space_id, "at": iso(self.at), "count": self.count}


@dataclass(frozen=True, slots=True)
class DailyReset:
    """A reset every day at a local wall-clock time in an IANA zone; ``time=None`` turns it off."""

    space_id: str
    """The space reset every day."""
    time: str | None
    """Local ``HH:MM`` (or ``HH:MM:SS``), or ``None`` to remove the daily reset."""
    tz: str
    """IANA time zone the wall-clock time is read in."""
    count: int = 0
    """The count set at each daily reset."""
    since: int | None = None
    """Epoch µs after which the daily instants are resets; ``None``: when the setting is
    recorded (its Kafka timestamp). An earlier instant backfills past days' resets."""

    def to_json(self) -> dict[str, Any]:
        if self.time is None:
            return {"space_id": self.space_id, "daily_reset": None}
        daily: dict[str, Any] = {"time": self.time, "tz": self.tz, "count": self.count}
        if self.since is not None:
            daily["since"] = iso(self.since)
        return {"space_id": self.space_id, "daily_reset": daily}


@dataclass(frozen=True, slots=True)
class Reject:
    """An input that was refused, with why."""

    reason: str
    """One readable sentence: what was wrong."""
    raw: bytes
    """The bytes as received."""


class Invalid(ValueError):
    """Internal signal of a validation failure; never escapes ``parse_*``."""


def _obj(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise Invalid(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Invalid("not valid JSON") from None
    if not isinstance(value, dict):
        raise Invalid(f"expected a JSON object, got {type(value).__name__}")
    return value


def valid_id(value: Any, name: str) -> str:
    """The id ``value`` as text, or :class:`Invalid` saying why it is not one (SPEC §3).

    A valid id is a string or an integer that, stripped of surrounding whitespace, is 1 to
    ``MAX_ID_LEN`` characters long, holds no control character (Unicode category Cc, anywhere in
    the value) and encodes as UTF-8 (no lone surrogates, which CLI arguments can carry).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid(f"{name} must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, int):
        if abs(value) >= _INT_ID_LIMIT:  # before str(): Python refuses huge ints as text
            raise Invalid(f"{name} is longer than {MAX_ID_LEN} characters")
        value = str(value)
    control = _CONTROL.search(value)
    if control:
        raise Invalid(f"{name} holds a control character (U+{ord(control.group()):04X})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{name} is not valid UTF-8 (lone surrogate "
                      f"U+{ord(value[exc.start]):04X})") from None
    text = value.strip()
    if not text:
        raise Invalid(f"{name} is empty")
    if len(text) > MAX_ID_LEN:
        raise Invalid(f"{name} is longer than {MAX_ID_LEN} characters")
    return text


def _ident(obj: dict[str, Any], name: str, *, required: bool = True,
           label: str | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise Invalid(f"missing field {label or name!r}")
        return None
    return valid_id(value, label or name)


def _sign(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise Invalid(f"{name} must be 1 or -1, got {value!r}")
    if isinstance(value, int) and value in (1, -1):
        return value
    if isinstance(value, str) and value.strip() in ("1", "-1", "+1"):
        return int(value)
    if value is None:
        raise Invalid(f"missing field {name!r}")
    raise Invalid(f"{name} must be 1 or -1, got {str(value)[:32]!r}")


def future_limit(now_us: int | None, max_future_s: float) -> int:
    """The latest record instant accepted at ``now_us`` (the wall clock when None)."""
    now = wall_clock_us() if now_us is None else now_us
    try:
        return min(MAX_US, now + int(max_future_s * US))
    except (OverflowError, ValueError):  # an infinite or NaN setting: only the absolute bound
        return MAX_US


def valid_instant(value: Any, name: str, now_us: int | None,
                  max_future_s: float = MAX_FUTURE_S) -> int:
    """A record's instant (event timestamp, placement installed_at, reset at), or Invalid.

    Valid: ISO 8601 text (no offset = UTC), at or after 1970-01-01T00:00:00Z and at most
    ``max_future_s`` ahead of ``now_us`` (the wall clock when None), both bounds included.
    """
    if value is None:
        raise Invalid(f"missing field {name!r}")
    try:
        ts = parse_ts(value, name)
    except TooLate:
        ts = None
    except BadTimestamp as exc:
        raise Invalid(str(exc)) from None
    if ts is None or ts > future_limit(now_us, max_future_s):
        raise Invalid(f"{name} is more than {max_future_s / 3600:g} h ahead of the clock")
    return ts


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("count must be an integer")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,12}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise Invalid("count must be an integer")
    if not 0 <= value <= 10**9:
        raise Invalid(f"count must be between 0 and 1000000000, got {value}")
    return value


def event_from_obj(obj: dict[str, Any], now_us: int | None = None,
                   max_future_s: float = MAX_FUTURE_S) -> DpuEvent:
    ts = valid_instant(obj.get("timestamp"), "timestamp", now_us, max_future_s)
    return DpuEvent(
        dpu_id=_ident(obj, "dpu_id"),  # type: ignore[arg-type]
        ts=ts,
        direction=_sign(obj.get("direction"), "direction"),
        event_id=_ident(obj, "event_id", required=False),
    )


def parse_event(raw: bytes, *, now_us: int, max_bytes: int,
                max_future_s: float) -> Union[DpuEvent, Reject]:
    """One ``dpu-events`` record value to an event, or a reject with the reason."""
    try:
        return event_from_obj(_obj(raw, max_bytes), now_us, max_future_s)
    except Invalid as exc:
        return Reject(str(exc), raw)


def placement_from_obj(obj: dict[str, Any], now_us: int | None = None,
                       max_future_s: float = MAX_FUTURE_S) -> Placement:
    dpu_id = _ident(obj, "dpu_id")
    installed_at = valid_instant(obj.get("installed_at"), "installed_at", now_us, max_future_s)
    spaces_raw = obj.get("spaces")
    if not isinstance(spaces_raw, list):
        raise Invalid("spaces must be a list (empty when the DPU was taken down)")
    if len(spaces_raw) > 2:
        raise Invalid("a doorway joins at most two spaces")
    spaces: list[SpaceSign] = []
    for i, item in enumerate(spaces_raw):
        if not isinstance(item, dict):
            raise Invalid(f"spaces[{i}] must be an object")
        sid = _ident(item, "space_id", label=f"spaces[{i}].space_id")
        spaces.append(SpaceSign(sid, _sign(item.get("direction"), f"spaces[{i}].direction")))  # type: ignore[arg-type]
    if len({s.space_id for s in spaces}) != len(spaces):
        raise Invalid("a space appears twice in one placement")
    doorway_id = _ident(obj, "doorway_id", required=bool(spaces))
    return Placement(dpu_id, installed_at, tuple(spaces), doorway_id)  # type: ignore[arg-type]


def parse_placement(raw: bytes, *, max_bytes: int, now_us: int | None = None,
                    max_future_s: float = MAX_FUTURE_S) -> Union[Placement, Reject]:
    """One ``dpu-placements`` record value to a placement, or a reject."""
    try:
        return placement_from_obj(_obj(raw, max_bytes), now_us, max_future_s)
    except Invalid as exc:
        return Reject(str(exc), raw)


_WALL_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")


def reset_from_obj(obj: dict[str, Any], now_us: int | None = None,
                   max_future_s: float = MAX_FUTURE_S) -> Union[Reset, DailyReset]:
    space_id = _ident(obj, "space_id")
    if "daily_reset" in obj:
        daily = obj["daily_reset"]
        if daily is None:
            return DailyReset(space_id, None, "UTC")  # type: ignore[arg-type]
        if not isinstance(daily, dict):
            raise Invalid("daily_reset must be an object or null")
        wall = daily.get("time")
        if not isinstance(wall, str) or not _WALL_TIME.fullmatch(wall):
            raise Invalid("daily_reset.time must be HH:MM or HH:MM:SS")
        tz = daily.get("tz")
        if not isinstance(tz, str) or not tz:
            raise Invalid("daily_reset.tz must be an IANA time zone name")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
            raise Invalid(f"unknown time zone {tz[:64]!r}") from None
        since = daily.get("since")
        if since is not None:
            since = valid_instant(since, "daily_reset.since", now_us, max_future_s)
        count = _count(daily.get("count", 0))
        return DailyReset(space_id, wall, tz, count, since)  # type: ignore[arg-type]
    if "count" not in obj:
        raise Invalid("missing field 'count'")
    return Reset(space_id, valid_instant(obj.get("at"), "at", now_us, max_future_s),  # type: ignore[arg-type]
                 _count(obj["count"]))  # type: ignore[arg-type]


def parse_reset(raw: bytes, *, max_bytes: int, now_us: int | None = None,
                max_future_s: float = MAX_FUTURE_S) -> Union[Reset, DailyReset, Reject]:
    """One ``space-resets`` record value to a reset or daily-reset setting, or a reject."""
    try:
        return reset_from_obj(_obj(raw, max_bytes), now_us, max_future_s)
    except Invalid as exc:
        return Reject(str(exc), raw)
