"""A small, obviously correct implementation of the count definition (SPEC §2), for tests only.

It recomputes everything from the full input lists on every call: no state, no order.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

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


class Index:
    """``count`` for many instants of the same inputs: the same definition, precomputed.

    Per space, the contributions of the events counted (first of each ``event_id``) sorted by
    instant with running sums, and the resets sorted by instant; count(S, T) is then the latest
    reset's count plus the contributions after it and at or before T.
    """

    def __init__(self, events: list[DpuEvent], placements: list[Placement],
                 resets: list[Reset]) -> None:
        seen_ids: set[tuple[str, str]] = set()
        contributions: dict[str, list[tuple[int, int]]] = {}
        for e in events:
            if e.event_id is not None:
                if (e.dpu_id, e.event_id) in seen_ids:
                    continue
                seen_ids.add((e.dpu_id, e.event_id))
            p = placement_at(placements, e.dpu_id, e.ts)
            for s in (p.spaces if p else ()):
                contributions.setdefault(s.space_id, []).append((e.ts, e.direction * s.direction))
        self._ts: dict[str, list[int]] = {}
        self._sums: dict[str, list[int]] = {}
        for space, items in contributions.items():
            items.sort()
            self._ts[space] = [ts for ts, _ in items]
            self._sums[space] = list(accumulate(d for _, d in items))
        latest: dict[tuple[str, int], Reset] = {}
        for r in resets:
            latest.setdefault((r.space_id, r.at), r)  # as ``count``: the first of an instant
        self._resets: dict[str, list[Reset]] = {}
        for r in sorted(latest.values(), key=lambda r: r.at):
            self._resets.setdefault(r.space_id, []).append(r)

    def _upto(self, space_id: str, at: int | None) -> int:
        ts = self._ts.get(space_id, [])
        n = len(ts) if at is None else bisect_right(ts, at)
        return self._sums[space_id][n - 1] if n else 0

    def count(self, space_id: str, at: int | None) -> int:
        resets = self._resets.get(space_id, [])
        i = len(resets) if at is None else bisect_right([r.at for r in resets], at)
        if not i:
            return self._upto(space_id, at)
        latest = resets[i - 1]
        return latest.count + self._upto(space_id, at) - self._upto(space_id, latest.at)
