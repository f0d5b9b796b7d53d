"""Randomized end-to-end scenarios through the real broker, worker and PostgreSQL."""

from __future__ import annotations

import random
import time

from pipeline.timeutil import iso
from tests import reference, scenarios


def test_ten_thousand_disordered_events_agree_with_the_reference(pipeline):
    sc = scenarios.build(seed=20261127)
    assert len(sc.events) >= 10_000
    started = time.monotonic()
    for wave in sc.waves:
        pipeline.publish(wave)
    pipeline.wait(timeout=300)
    elapsed = time.monotonic() - started
    realtime = {s: pipeline.count(s) for s in sc.spaces}
    expected = {s: reference.count(s, None, sc.events, sc.placements, sc.resets)
                for s in sc.spaces}
    assert realtime == expected

    rng = random.Random(7)
    lo, hi = scenarios.START - 7200 * 10**6, scenarios.START + (scenarios.DAYS + 1) * 86400 * 10**6
    probes = [rng.randrange(lo, hi) for _ in range(40)]
    probes += [r.at for r in rng.sample(sc.resets, 5)] + [e.ts for e in rng.sample(sc.events, 5)]
    compared = 0
    for space in sc.spaces:
        for at in probes:
            status, body = pipeline.get(f"/spaces/{space}/count?at={iso(at)}")
            assert status == 200
            assert body["count"] == reference.count(space, at, sc.events, sc.placements,
                                                    sc.resets), (space, iso(at))
            compared += 1
    print(f"\n{len(sc.events)} events in {elapsed:.1f}s; {len(sc.spaces)} realtime and "
          f"{compared} as-of answers equal the reference")
