"""The counting logic for one input record, over any key-value store.

Agents call these functions with the Faust tables; unit tests call them with plain dicts, so the
property tests exercise exactly the code that runs in the workers. Each function reads and writes
state through :class:`Store` and returns the records to send on (``Out``), never sending itself.

Idempotence: every state value records the highest source offset it applied per source partition.
A record above it is new. One at or below it is checked exactly against the logs (the DPU's day
log, the space's day log, the placement history, the latest reset): a redelivered record changes
no state, while a record Faust skipped and delivers only after later ones is still applied. The
records derived from a record carry its source coordinates, so the next stage does the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pipeline.models import DailyReset, DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import day_of
from tables.daily import DailySchedule
from tables.dpu_state import DpuState, reattribution
from tables import chunks
from tables.chunks import SEP as KEY_SEP
from tables.space_state import SpaceState
from tables.store import Store

DELTAS, TELEMETRY, COUNTS = "space-deltas", "dpu-telemetry", "space-counts"
"""Destinations of :class:`Out` records (topic names without the prefix)."""
FIRST_CORRECTION_SEQ = 2
"""Deltas' ``seq``: 0 and 1 are an event's spaces (or the spaces a placement makes known),
``2 + offset`` a correction of the event at that offset."""


@dataclass(slots=True)
class Source:
    """Where a record came from."""

    partition: int
    """Kafka partition of the record."""
    offset: int
    """Kafka offset of the record."""
    timestamp: int = 0
    """Kafka record timestamp, epoch microseconds."""


@dataclass(slots=True)
class Out:
    """A record to send: destination, key, JSON-able value."""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What handling one record produced."""

    out: list[Out]
    """Records to send on."""
    duplicate: bool = False
    """The event repeated an ``event_id`` already counted."""
    redelivered: bool = False
    """The record (or delta) had already been applied."""


def on_event(db: Store, e: DpuEvent, src: Source) -> Outcome:
    """Count an event on its DPU and attribute it through the placement valid at its time."""
    source = f"e:{src.partition}"
    state = db.load("dpus", e.dpu_id) or DpuState(e.dpu_id)
    day = day_of(e.ts)
    log = f"{e.dpu_id}{KEY_SEP}{day}"
    first = None
    if state.maybe_applied(source, src.offset):
        # Logs are written before states, so an event counted before has its entry.
        first = next((c for c in chunks.read(db, "dpu-days", log, state.days.get(day, 0))
                      if c[2] == src.partition and c[3] == src.offset), None)
    redelivered = first is not None
    if e.event_id is not None and not redelivered:
        id_key = f"{e.dpu_id}{KEY_SEP}{e.event_id}"
        first_of_id = db.load("event-ids", id_key)
        if first_of_id is not None and first_of_id != [src.partition, src.offset]:
            state.mark_applied(source, src.offset)
            db.store("dpus", e.dpu_id, state)
            return Outcome([], duplicate=True)
        db.store("event-ids", id_key, [src.partition, src.offset])
    placement = state.placements.valid_at(e.ts)
    now_signs = placement.spaces if placement else ()
    corrections: list[Out] = []
    if redelivered:
        # Send again exactly what the first delivery sent (its attribution then), so that the
        # next stage drops it as a copy, or applies it if the first copy was lost.
        signs = tuple(SpaceSign(s, d) for s, d in first[4])
    else:
        signs = now_signs
        state.count_event(e.ts, e.direction)
        # The DPU's own history, so that a placement recorded late can re-attribute this event.
        length = state.days.get(day, 0)
        now_pairs = sign_pairs(now_signs)
        entry = (e.ts, e.direction, src.partition, src.offset, now_pairs)
        lost = chunks.peek(db, "dpu-days", log, length)
        if lost is not None and lost[2] == src.partition and lost[3] == src.offset:
            # Counted by a batch a kill cut short after its deltas went out (its log entry was
            # written first): those deltas stand, under the attribution of then, and so do
            # the corrections such a batch sent since. A placement counted meanwhile (the
            # topics read again in another order) did not see this event: correct it here.
            signs, entry, corrections = adopt(e, src, lost, now_signs)
        chunks.append(db, "dpu-days", log, length, entry)
        state.days[day] = length + 1
        state.mark_applied(source, src.offset)
        db.store("dpus", e.dpu_id, state)
    out = [Out(DELTAS, s.space_id, {"k": "e", "ts": e.ts, "d": e.direction * s.direction,
                                    "dpu": e.dpu_id, "src": ["e", src.partition, src.offset, i]})
           for i, s in enumerate(signs)] + corrections
    out.append(Out(TELEMETRY, e.dpu_id, {
        "k": "event", "src": [src.partition, src.offset], "kts": src.timestamp,
        "dpu": e.dpu_id, "ts": e.ts, "dir": e.direction, "eid": e.event_id,
        "ins": state.ins, "outs": state.outs,
        "door": placement.doorway_id if placement else None,
        "pat": placement.installed_at if placement else None,
        "sp": first[4] if redelivered else now_pairs}))
    return Outcome(out, redelivered=redelivered)


def adopt(e: DpuEvent, src: Source, lost: list,
          now_signs: tuple[SpaceSign, ...]) -> tuple[tuple[SpaceSign, ...], list, list[Out]]:
    """An event found in its log slot, left there by a batch cut short: the attribution its
    deltas were sent under, its log entry, and the corrections from there to ``now_signs``.

    The entry keeps the first attribution (what a redelivery sends again) and each one it was
    corrected to since; correction ``k`` moves the event from attribution ``k`` to ``k + 1``
    under id ``2 + k``, so every attempt sends the same corrections again and adds only one.
    """
    chain = [lost[4], *(lost[5] if len(lost) > 5 else ())]
    now_pairs = sign_pairs(now_signs)
    if chain[-1] != now_pairs:
        chain.append(now_pairs)
    crossing = [(src.offset, e.ts, int(e.direction > 0), int(e.direction < 0))]
    corrections = []
    for k, (before, after) in enumerate(zip(chain, chain[1:])):
        moved = reattribution(crossing, e.ts, None, _placement(e.dpu_id, before),
                              _placement(e.dpu_id, after))
        corrections += correction_deltas(e.dpu_id, moved, {src.offset: e.ts},
                                         ["e", src.partition, src.offset],
                                         seq=lambda _: FIRST_CORRECTION_SEQ + k)
    first = tuple(SpaceSign(s, d) for s, d in chain[0])
    return first, (*lost[:5], tuple(chain[1:])), corrections


def sign_pairs(signs: tuple[SpaceSign, ...]) -> tuple[tuple[str, int], ...]:
    """An attribution as the day logs keep it: ``((space_id, direction), ...)``."""
    return tuple((s.space_id, s.direction) for s in signs)


def _placement(dpu_id: str, signs) -> Placement:
    return Placement(dpu_id, 0, tuple(SpaceSign(s, d) for s, d in signs))


def correction_deltas(dpu_id: str, corrections: dict[tuple[str, int], tuple[int, int]],
                      instants: dict[int, int], source: list,
                      seq=lambda offset: FIRST_CORRECTION_SEQ + offset) -> list[Out]:
    """Deltas that move events between spaces, one per (space, event), in time order.

    ``corrections`` maps ``(space_id, event offset)`` to the change of ``(entries, exits)``
    (``reattribution``); ``source`` is the ``[code, partition, offset]`` of the record that
    corrects. A placement numbers each delta by the offset of the event it corrects
    (``seq``): the same correction made again (its record read again after a kill, with more
    or fewer events counted before it) keeps its id. (A DPU's events and placements share a
    partition number, so the offset names the event.)
    """
    return [Out(DELTAS, space_id, {
        "k": "c", "ts": instants[offset], "d": entries - exits, "en": entries, "ex": exits,
        "dpu": dpu_id, "src": [*source, seq(offset)]})
        for (space_id, offset), (entries, exits) in sorted(
            corrections.items(), key=lambda c: (instants[c[0][1]], c[0][1], c[0][0]))]


def on_placement(db: Store, p: Placement, src: Source) -> Outcome:
    """Record a placement; correct the events it takes over from the one before it."""
    source = f"p:{src.partition}"
    state = db.load("dpus", p.dpu_id) or DpuState(p.dpu_id)
    # A space is known once a placement names it: make sure its count exists.
    out = [Out(DELTAS, s.space_id, {"k": "known", "src": ["p", src.partition, src.offset, i]})
           for i, s in enumerate(p.spaces)]
    if state.maybe_applied(source, src.offset) and (
            state.placements.holds(p) or state.placements.superseded(p, src.offset)):
        return Outcome(out, redelivered=True)
    start, end, before = state.placements.add(p, src.offset)
    state.mark_applied(source, src.offset)
    db.store("dpus", p.dpu_id, state)
    instants: dict[int, int] = {}
    crossings = []
    for day, n in state.days_between(start, end):
        for ts, d, _, offset, *_ in chunks.read(db, "dpu-days", f"{p.dpu_id}{KEY_SEP}{day}", n):
            instants[offset] = ts
            crossings.append((offset, ts, int(d > 0), int(d < 0)))
    out += correction_deltas(p.dpu_id, reattribution(crossings, start, end, before, p),
                             instants, ["p", src.partition, src.offset])
    # Always, even with nothing to correct: rows written before (a replay) must follow too.
    out.append(Out(TELEMETRY, p.dpu_id, {
        "k": "reattributed", "dpu": p.dpu_id, "start": start, "end": end,
        "door": p.doorway_id, "pat": p.installed_at,
        "sp": [[s.space_id, s.direction] for s in p.spaces]}))
    return Outcome(out)


def _count_record(state: SpaceState, record: dict[str, Any]) -> Out:
    record.update(space=state.space_id, count=state.count, at=state.updated_at)
    return Out(COUNTS, state.space_id, record)


def on_delta(db: Store, space_id: str, delta: dict[str, Any], now: int) -> Outcome:
    """Apply one attributed delta (or a ``known`` marker) to a space."""
    code, partition, offset, seq = delta["src"]
    source = f"{code}:{partition}"
    state = db.load("spaces", space_id) or SpaceState(space_id)
    if state.maybe_applied(source, offset, seq) and _delta_applied(db, state, delta):
        return Outcome([], redelivered=True)
    state.mark_applied(source, offset, seq)
    state.updated_at = now
    if delta["k"] == "known":
        db.store("spaces", space_id, state)
        return Outcome([_count_record(state, {"k": "known"})])
    ts, d = delta["ts"], delta["d"]
    counted = state.counts_at_realtime(ts)
    in_order = state.in_time_order(ts)
    logged = state.add_delta(ts, d)
    if logged is not None:
        day, index = logged
        chunks.append(db, "space-days", f"{space_id}{KEY_SEP}{day}", index,
                      (ts, d, tuple(delta["src"])))
    db.store("spaces", space_id, state)
    return Outcome([_count_record(state, {
        "k": delta["k"], "ts": ts, "d": d, "dpu": delta["dpu"],
        "en": delta.get("en", max(d, 0)), "ex": delta.get("ex", max(-d, 0)),
        "src": delta["src"], "counted": counted, "in_order": in_order})])


def _delta_applied(db: Store, state: SpaceState, delta: dict[str, Any]) -> bool:
    """Whether a delta at or below the space's high-water mark really was applied."""
    if delta["k"] == "known":
        return True  # changes nothing twice anyway
    ts = delta["ts"]
    if not state.counts_at_realtime(ts):
        return False  # absorbed by the latest reset: applying again only re-sends its row
    day = day_of(ts)
    logged = state.days.get(day, [0, 0])[1]
    src = tuple(delta["src"])
    return any(c[2] == src for c in chunks.read(
        db, "space-days", f"{state.space_id}{KEY_SEP}{day}", logged))


def _reset_applied(db: Store, state: SpaceState, r: Reset | DailyReset) -> bool:
    """Whether a reset at or below the space's high-water mark really was applied."""
    if isinstance(r, DailyReset):
        value = db.load("daily-resets", r.space_id)
        if value is None or r.time is None:
            return value is None and r.time is None
        schedule = DailySchedule.from_value(value)
        return (schedule.wall, schedule.tz, schedule.count) == (r.time, r.tz, r.count) and (
            r.since is None or schedule.since == r.since)
    # An earlier reset than the latest changes nothing now; the latest itself, if it is this one.
    return state.reset_at is not None and (r.at < state.reset_at or (
        r.at == state.reset_at and r.count == state.reset_count))


def on_reset(db: Store, r: Reset | DailyReset, src: Source, now: int) -> Outcome:
    """Apply a reset (late or not) or a daily-reset setting to a space."""
    source = f"r:{src.partition}"
    state = db.load("spaces", r.space_id) or SpaceState(r.space_id)
    if state.maybe_applied(source, src.offset) and _reset_applied(db, state, r):
        return Outcome([], redelivered=True)
    state.mark_applied(source, src.offset)
    state.updated_at = now
    if isinstance(r, DailyReset):
        db.store("spaces", r.space_id, state)
        if r.time is None:
            db.delete("daily-resets", r.space_id)
        else:
            db.store("daily-resets", r.space_id,
                     DailySchedule(r.time, r.tz, r.count,
                                   src.timestamp if r.since is None else r.since).to_value())
        return Outcome([])
    daily = db.load("daily-resets", r.space_id)
    if daily is not None:
        schedule = DailySchedule.from_value(daily)
        if schedule.is_instant(r.at) and (schedule.last is None or r.at > schedule.last):
            db.store("daily-resets", r.space_id, replace(schedule, last=r.at).to_value())
    dropped = state.add_reset(
        r.at, r.count,
        lambda day, n: chunks.read(db, "space-days", f"{r.space_id}{KEY_SEP}{day}", n))
    for day, n in dropped:
        chunks.drop(db, "space-days", f"{r.space_id}{KEY_SEP}{day}", n)
    db.store("spaces", r.space_id, state)
    return Outcome([_count_record(state, {"k": "reset", "ts": r.at, "reset": r.count,
                                          "src": ["r", src.partition, src.offset, 0]})])
