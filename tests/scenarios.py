"""Random fleets with every kind of disorder, for end-to-end tests (deterministic per seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pipeline.models import DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import US, parse_ts
from tables.daily import DailySchedule

START = parse_ts("2026-03-04T00:00:00Z")  # the run crosses New York's DST change of 8 March
DAYS = 8


@dataclass
class Scenario:
    events: list[DpuEvent] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    resets: list[Reset] = field(default_factory=list)
    waves: list[list] = field(default_factory=list)
    """Records in the order they are published, wave after wave."""
    spaces: list[str] = field(default_factory=list)


def build(seed: int, n_events: int = 10_000, n_dpus: int = 8, n_spaces: int = 5) -> Scenario:
    rng = random.Random(seed)
    sc = Scenario(spaces=[f"S{i}" for i in range(n_spaces)])
    dpus = [f"D{i}" for i in range(n_dpus)]
    span = DAYS * 86400 * US

    def placement(dpu: str, at: int) -> Placement:
        roll = rng.random()
        if roll < 0.1:
            return Placement(dpu, at, ())  # taken down
        chosen = rng.sample(sc.spaces, 2 if roll < 0.6 else 1)
        signs = [SpaceSign(chosen[0], 1)] + ([SpaceSign(chosen[1], -1)] if len(chosen) > 1 else [])
        return Placement(dpu, at, tuple(signs), f"door-{dpu}-{at % 997}")

    for dpu in dpus:
        sc.placements.append(placement(dpu, START - 86400 * US))
        for _ in range(rng.randrange(0, 4)):  # moves and take-downs during the run
            sc.placements.append(placement(dpu, START + rng.randrange(span)))
    sc.resets += [Reset(s, START - 3600 * US, rng.randrange(10, 50)) for s in sc.spaces]
    # Daily resets at 04:00 New York time for two spaces, across the DST change.
    for s in sc.spaces[:2]:
        schedule = DailySchedule("04:00", "America/New_York", 0, since=START)
        sc.resets += [Reset(s, at, 5) for at in schedule.due(START + span)]
    sc.resets += [Reset(rng.choice(sc.spaces), START + rng.randrange(span), rng.randrange(0, 30))
                  for _ in range(4)]
    ids = 0
    for _ in range(n_events):
        dpu = rng.choice(dpus)
        ts = START + rng.randrange(span) // 1000 * 1000
        if rng.random() < 0.05 and sc.events:  # the same instant again: a second person
            ts = rng.choice(sc.events).ts
        event_id = None
        if rng.random() < 0.3:
            ids += 1
            event_id = f"e{ids}"
        sc.events.append(DpuEvent(dpu, ts, rng.choice([1, -1]), event_id))
    # Duplicates: records sent twice with their event_id (at-least-once producers).
    sc.events += [e for e in rng.sample(sc.events, n_events // 50) if e.event_id]
    # Disorder: events shuffled; some placements and resets recorded only after the events they
    # govern (retroactive moves, late resets), some events arrive after everything else.
    events = sc.events[:]
    rng.shuffle(events)
    early_pl = [p for p in sc.placements if rng.random() < 0.5]
    late_pl = [p for p in sc.placements if p not in early_pl]
    early_rs = [r for r in sc.resets if rng.random() < 0.5]
    late_rs = [r for r in sc.resets if r not in early_rs]
    cut = int(len(events) * 0.7)
    sc.waves = [early_pl + early_rs + events[:cut], late_pl + late_rs, events[cut:]]
    # The same event_id counts once: the reference must see events in arrival order.
    arrival = [r for wave in sc.waves for r in wave if isinstance(r, DpuEvent)]
    sc.events = arrival
    return sc
