"""The rebuild's events loop (``pipeline.recount.count_events``) against the agents' functions:
the same tables, partitions, history rows and refusals, whatever the input."""

from __future__ import annotations

import os
import random

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.models import DailyReset, DpuEvent, Placement, Reset, SpaceSign
from pipeline.producer import route
from pipeline.history import RECONCILED_TYPES, SPACE_COUNT_TYPES
from pipeline.rebuild import Record, reconciled, space_count_lines
from pipeline.recount import count_events, count_events_one_by_one, recount
from pipeline.settings import Settings
from pipeline.timeutil import US, parse_ts
from pipeline.topics import Partitioner
from sinks.copy_text import CopyRow
from tables.store import to_bytes

HOUR = 3600 * US
BASE = parse_ts("2026-03-06T00:00:00Z")
DPUS = ["d1", "d2", "d3", "d4"]
SPACES = ["A", "B", "C"]
SETTINGS = Settings.from_env({"DPU_PARTITIONS": "3"})
NOW = BASE + 30 * 24 * HOUR

instants = st.integers(0, 3 * 24 * 4).map(lambda q: BASE + q * (HOUR // 4))
signs = st.lists(st.tuples(st.sampled_from(SPACES), st.sampled_from([1, -1])),
                 max_size=2, unique_by=lambda s: s[0])
placements = st.builds(lambda d, at, ss: Placement(d, at, tuple(SpaceSign(*s) for s in ss),
                                                   "door" if ss else None),
                       st.sampled_from(DPUS[:3]), instants, signs)
events = st.builds(DpuEvent, st.sampled_from(DPUS), instants, st.sampled_from([1, -1]),
                   st.one_of(st.none(), st.sampled_from(["x", "y", "z"])))
resets = st.one_of(
    st.builds(Reset, st.sampled_from(SPACES), instants, st.integers(0, 40)),
    st.builds(lambda s, c: DailyReset(s, "02:30", "UTC", c, BASE), st.sampled_from(SPACES),
              st.integers(0, 9)))


def as_records(items: list, rng: random.Random) -> dict[str, list[Record]]:
    """Each item as the topics hold it, in the partition its key hashes to; some malformed,
    some keyed by another id, and some read twice (the same offset again)."""
    partition_of = Partitioner(SETTINGS.partitions)
    offsets: dict[tuple[str, int], int] = {}
    out: dict[str, list[Record]] = {}
    for item in items:
        name, key = route(item)
        value = orjson.dumps(item.to_json())
        roll = rng.random()
        if roll < 0.05:
            value = value[:-3]  # refused: not JSON
        elif roll < 0.08:
            key = key + "-other"  # refused: keyed otherwise than its id
        partition = partition_of(route(item)[1])
        offset = offsets.get((name, partition), 0)
        offsets[(name, partition)] = offset + 1
        record = Record(SETTINGS.topic(name), partition, offset, NOW / US, key.encode(), value)
        records = out.setdefault(name, [])
        records.append(record)
        if rng.random() < 0.05:
            records.append(record)  # read again: handed to the agents' functions
    return out


def outcome(records: dict[str, list[Record]], events_counter) -> tuple:
    result = recount(records.get("dpu-placements", []), records.get("space-resets", []),
                     records.get("dpu-events", []), SETTINGS, NOW, events_counter)
    tables = result.tables
    values = [(slot, None if value is None else to_bytes(slot[0], value))
              for slot, value in tables.values.items()]
    return values, tables.partition_of, result.history, result.rejected


@settings(max_examples=int(os.environ.get("DPU_PROPERTY_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=80), st.lists(placements, max_size=8),
       st.lists(resets, max_size=4), st.integers(0, 2**32))
def test_the_events_loop_makes_what_the_agents_functions_make(evs, pls, rss, seed):
    rng = random.Random(seed)
    items = [*evs, *pls, *rss]
    rng.shuffle(items)
    records = as_records(items, rng)
    fast = outcome(records, count_events)
    one_by_one = outcome(records, count_events_one_by_one)
    assert fast[3] == one_by_one[3], "refused records"
    assert fast[2] == one_by_one[2], "history rows"
    assert fast[0] == one_by_one[0], "table values, in the order they were written"
    assert fast[1] == one_by_one[1], "partitions of the keys"


def test_a_large_fleet_counts_the_same():
    """Hundreds of events per DPU and day: chunks fill and roll over, spaces are shared."""
    rng = random.Random(7)
    items: list = [Placement(f"d{i}", BASE - HOUR, (SpaceSign(f"s{i % 5}", 1),
                                                    SpaceSign(f"s{(i + 1) % 5}", -1)), "door")
                   for i in range(20)]
    items += [Reset("s1", BASE + 30 * HOUR, 3)]
    items += [DpuEvent(f"d{rng.randrange(20)}", BASE + rng.randrange(48 * HOUR),
                       rng.choice([1, -1])) for _ in range(3000)]
    records = as_records(items, random.Random(1))
    fast = outcome(records, count_events)
    assert fast == outcome(records, count_events_one_by_one)
    assert sum(1 for (table, _), _ in fast[0] if table == "dpu-days") > 20 * 2
    assert len(fast[2]) > 5000


def test_the_rebuilds_history_lines_are_what_the_sinks_encoder_makes():
    rng = random.Random(3)
    history = [[rng.choice(["A", "lobby\tB", "c\\d"]), BASE + rng.randrange(10**12),
                rng.choice(["d1", "d\n2"]), d, max(d, 0), max(-d, 0), rng.randrange(-5, 50),
                rng.random() < 0.9, rng.choice(["e", "c"]), rng.randrange(4),
                rng.randrange(10**6), rng.randrange(40)]
               for d in (rng.choice([1, -1, 2, -2]) for _ in range(25_000))]
    counts = [rng.randrange(100) for _ in history]
    encode = CopyRow((*SPACE_COUNT_TYPES, *RECONCILED_TYPES))
    blocks = list(space_count_lines(list(zip(history, counts)), NOW))
    assert len(blocks) == 3
    assert b"".join(blocks) == b"".join(encode((*row, count, NOW))
                                        for row, count in zip(history, counts))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SPACES), st.integers(0, 30), st.sampled_from([1, -1, 2])),
                max_size=60),
       st.lists(st.tuples(st.sampled_from(SPACES), st.integers(0, 30), st.integers(0, 9)),
                max_size=4, unique_by=lambda r: r[:2]))
def test_reconciled_counts_are_the_definition_in_space_and_instant_order(rows, marks):
    history = [[space, ts, "d", delta] for space, ts, delta in rows]
    resets: dict[str, list[tuple[int, int]]] = {}
    for space, at, count in marks:
        resets.setdefault(space, []).append((at, count))

    def count(space: str, t: int) -> int:  # SPEC §2: a reset absorbs its instant
        latest = max((r for r in resets.get(space, ()) if r[0] <= t), default=None)
        base_at, total = latest if latest else (None, 0)
        return total + sum(r[3] for r in history
                           if r[0] == space and r[1] <= t and (base_at is None or r[1] > base_at))

    out = reconciled(history, resets)
    assert sorted(map(id, (row for row, _ in out))) == sorted(map(id, history))
    assert [(row[0], row[1]) for row, _ in out] == sorted((row[0], row[1]) for row in history)
    assert all(c == count(row[0], row[1]) for row, c in out)
