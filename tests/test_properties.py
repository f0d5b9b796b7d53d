"""Property-based: the counting logic equals the reference definition whatever the disorder."""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.models import DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import US, parse_ts
from tables.daily import DailySchedule
from tests import reference
from tests.simulator import DictStore, Simulation

HOUR = 3600 * US
DPUS = ["d1", "d2", "d3"]
SPACES = ["A", "B", "C"]

# Instants on a coarse grid over four days around New York's DST change of 8 March 2026, so that
# events, placements and resets often fall on exactly the same instant (the boundary cases of the
# definition), daily resets included.
BASE = parse_ts("2026-03-06T00:00:00Z")
instants = st.integers(0, 4 * 24 * 4).map(lambda q: BASE + q * (HOUR // 4))
daily = st.lists(st.tuples(st.sampled_from(SPACES), st.sampled_from(["04:00", "02:30", "23:15"]),
                           st.integers(0, 9)), max_size=2, unique_by=lambda d: d[0])


def daily_resets(settings: list[tuple[str, str, int]]) -> list[Reset]:
    """The resets the daily-reset timer publishes over the four days, as ordinary resets."""
    out = []
    for space, wall, count in settings:
        schedule = DailySchedule(wall, "America/New_York", count, since=BASE - 1)
        out += [Reset(space, at, count) for at in schedule.due(BASE + 4 * 24 * HOUR)]
    return out

signs = st.lists(st.tuples(st.sampled_from(SPACES), st.sampled_from([1, -1])),
                 max_size=2, unique_by=lambda s: s[0])
placements = st.builds(lambda d, at, ss: Placement(d, at, tuple(SpaceSign(*s) for s in ss),
                                                   "door" if ss else None),
                       st.sampled_from(DPUS), instants, signs)
events = st.builds(DpuEvent, st.sampled_from(DPUS), instants, st.sampled_from([1, -1]),
                   st.one_of(st.none(), st.sampled_from(["x", "y", "z"])))
resets = st.builds(Reset, st.sampled_from(SPACES), instants, st.integers(0, 40))


@settings(max_examples=int(os.environ.get("DPU_PROPERTY_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=60), st.lists(placements, max_size=8),
       st.lists(resets, max_size=5), daily, st.integers(0, 2**32), st.lists(instants, max_size=5))
def test_realtime_and_history_equal_the_reference(evs, pls, rss, dailies, seed, probes):
    rng = random.Random(seed)
    rss = rss + daily_resets(dailies)
    records = [*evs, *pls, *rss]
    rng.shuffle(records)  # any arrival order: late events, late placements, late resets
    sim = Simulation(rng, skip=0.1, lose_state=0.05, db=DictStore(cache=True))
    sim.run(records)
    sim.db.verify()
    records = sim.order  # skipped records were processed later: that is their arrival order
    # Placements of one DPU at the same instant: the later record on the topic wins; resets of
    # one space at the same instant: the one processed last, redeliveries included. So in the
    # tables as in the sinks; the reference sees those.
    effective_pls = list(sim.placements.values())
    effective_rss = list(sim.resets.values())
    # Events are counted in arrival order, so "the first copy" of an event_id is the first to
    # arrive: the reference reads them in that order too.
    arrival_events = [r for r in records if isinstance(r, DpuEvent)]
    known = {s.space_id for p in pls for s in p.spaces} | {r.space_id for r in rss}
    for space in SPACES:
        expected = reference.count(space, None, arrival_events, effective_pls, effective_rss)
        assert sim.realtime(space) == (expected if space in known else None)
        for at in probes:
            assert sim.as_of(space, at) == reference.count(space, at, arrival_events,
                                                           effective_pls, effective_rss)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=40), st.lists(placements, max_size=6),
       st.lists(resets, max_size=5), st.lists(instants, max_size=6))
def test_the_precomputed_reference_index_agrees_with_the_definition(evs, pls, rss, probes):
    index = reference.Index(evs, pls, rss)
    for space in SPACES:
        for at in [None, *probes, *(r.at for r in rss), *(e.ts for e in evs[:5])]:
            assert index.count(space, at) == reference.count(space, at, evs, pls, rss)
