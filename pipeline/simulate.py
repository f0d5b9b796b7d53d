"""A synthetic fleet, deterministic from a seed: spaces, doorways, DPUs, placements, traffic.

Each space has one outside door and doors to its neighbours; a DPU hangs over each door (+1 into
the space for outside doors; between two spaces +1 into the first, out of the second). Traffic
follows a daily shape (quiet nights, morning and evening peaks); with ``disorder`` some events
arrive late, some twice (same ``event_id``), and some sensors are moved during the run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from pipeline.models import DpuEvent, Placement, Reset, SpaceSign
from pipeline.timeutil import US


@dataclass
class Fleet:
    spaces: list[str]
    placements: list[Placement]
    resets: list[Reset]
    dpus: list[str] = field(default_factory=list)


def fleet(seed: int, n_dpus: int, n_spaces: int, start: int) -> Fleet:
    rng = random.Random(seed)
    spaces = [f"space-{i}" for i in range(n_spaces)]
    placements = []
    for i in range(n_dpus):
        dpu = f"dpu-{i}"
        inside = spaces[i % n_spaces]
        if i < n_spaces or rng.random() < 0.5:
            signs: tuple[SpaceSign, ...] = (SpaceSign(inside, 1),)
        else:
            other = spaces[(i + rng.randrange(1, n_spaces)) % n_spaces] if n_spaces > 1 else inside
            signs = (SpaceSign(inside, 1),) if other == inside else \
                (SpaceSign(inside, 1), SpaceSign(other, -1))
        placements.append(Placement(dpu, start - 86400 * US, signs, f"door-{i}"))
    resets = [Reset(s, start - 3600 * US, rng.randrange(0, 20)) for s in spaces]
    return Fleet(spaces, placements, resets, [p.dpu_id for p in placements])


def daily_shape(ts: int) -> float:
    """Relative traffic by hour of day: two peaks, quiet nights."""
    hour = (ts // (3600 * US)) % 24
    return 0.1 + math.exp(-((hour - 9) ** 2) / 4) + math.exp(-((hour - 17) ** 2) / 6)


def events(seed: int, f: Fleet, n: int, start: int, span_s: int = 86400,
           disorder: float = 0.0) -> list[DpuEvent]:
    """``n`` events over ``span_s`` seconds from ``start``, shaped by the hour of day."""
    rng = random.Random(seed + 1)
    out: list[DpuEvent] = []
    while len(out) < n:
        ts = start + rng.randrange(span_s * US)
        if rng.random() > daily_shape(ts) / 1.2:
            continue
        event_id = f"ev-{len(out)}" if disorder else None
        out.append(DpuEvent(rng.choice(f.dpus), ts, rng.choice([1, -1]), event_id))
    out.sort(key=lambda e: e.ts)
    if disorder:
        late = [i for i in range(len(out)) if rng.random() < disorder]
        moved = [out[i] for i in late]
        out = [e for i, e in enumerate(out) if i not in set(late)] + moved  # late arrivals
        out += rng.sample(out, int(len(out) * disorder / 2))  # delivered twice
    return out
