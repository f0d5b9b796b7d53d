"""A small, obviously correct implementation of the count definition (SPEC §2), for tests only.

It recomputes everything from the full input lists on every call: no state, no order.
"""

from __future__ import annotations

from pipeline.models import DpuEvent, Placement, Reset


def placement_at(placements: list[Placement], dpu_id: str, ts: int) -> Placement | None:
    valid = [p for p in placements if p.dpu_id == dpu_id and p.installed_at <= ts]
    return max(valid, key=lambda p: p.installed_at) if valid else None


def count(space_id: str, at: int | None, events: list[DpuEvent], placements: list[Placement],
          resets: list[Reset]) -> int:
    """count(S, T); ``at=None`` is T = +infinity (the realtime count)."""
    in_time = [r for r in resets if r.space_id == space_id and (at is None or r.at <= at)]
    latest = max(in_time, key=lambda r: r.at) if in_time else None
    total = latest.count if latest else 0
    seen_ids: set[tuple[str, str]] = set()
    for e in events:
        if e.event_id is not None:
            if (e.dpu_id, e.event_id) in seen_ids:
                continue
            seen_ids.add((e.dpu_id, e.event_id))
        if latest is not None and e.ts <= latest.at:
            continue
        if at is not None and e.ts > at:
            continue
        p = placement_at(placements, e.dpu_id, e.ts)
        for s in (p.spaces if p else ()):
            if s.space_id == space_id:
                total += e.direction * s.direction
    return total
