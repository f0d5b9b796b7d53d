"""``pipeline.bulk_restore``: a fetched partition of a changelog applied to its table in one batch,
in order, after what Faust's own loop had buffered, and only the records not yet applied."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from types import SimpleNamespace

from faust.types import TP

from pipeline import bulk_restore

ACTIVE, STANDBY, OTHER = TP("c-dpus-changelog", 0), TP("c-dpus-changelog", 1), TP("x", 0)


class FakeTable:
    def __init__(self) -> None:
        self.applied: list[list] = []

    def apply_changelog_batch(self, batch) -> None:
        self.applied.append([event.message.offset for event in batch])


class FakeChannel:
    async def decode(self, message):
        return SimpleNamespace(message=message)


def fake_app(seen: dict[TP, int]):
    table = FakeTable()
    recovery = SimpleNamespace(
        active_tps={ACTIVE}, standby_tps={STANDBY},
        active_offsets=Counter({ACTIVE: seen.get(ACTIVE, -1)}),
        standby_offsets=Counter({STANDBY: seen.get(STANDBY, -1)}),
        tp_to_table={ACTIVE: table, STANDBY: table}, buffers=defaultdict(list))
    tables = SimpleNamespace(recovery=recovery, _channels={table: FakeChannel()})
    return SimpleNamespace(tables=tables), table


def messages(tp: TP, offsets) -> list:
    return [SimpleNamespace(tp=tp, offset=o) for o in offsets]


def run(app, tp, fetched) -> list:
    delivered = []

    async def deliver(message):
        delivered.append(message.offset)

    asyncio.run(bulk_restore.restore(app, tp, fetched, deliver))
    return delivered


def test_records_not_yet_applied_go_in_one_batch_and_the_last_to_fausts_loop():
    app, table = fake_app({ACTIVE: 4})
    delivered = run(app, ACTIVE, messages(ACTIVE, range(3, 9)))
    assert table.applied == [[5, 6, 7, 8]]
    assert app.tables.recovery.active_offsets[ACTIVE] == 8  # Faust's loop skips 8, then checks
    assert delivered == [8]


def test_a_standby_partition_keeps_its_own_offsets():
    app, table = fake_app({STANDBY: 10})
    run(app, STANDBY, messages(STANDBY, [11, 12]))
    assert table.applied == [[11, 12]]
    assert app.tables.recovery.standby_offsets[STANDBY] == 12
    assert app.tables.recovery.active_offsets[ACTIVE] == -1


def test_what_fausts_loop_buffered_is_applied_before_the_newer_fetch():
    app, table = fake_app({ACTIVE: 2})
    app.tables.recovery.buffers[table] = [SimpleNamespace(message=m)
                                          for m in messages(ACTIVE, [1, 2])]
    run(app, ACTIVE, messages(ACTIVE, [3, 4]))
    assert table.applied == [[1, 2], [3, 4]]
    assert app.tables.recovery.buffers[table] == []


def test_a_fetch_already_applied_changes_nothing_but_is_still_handed_on():
    app, table = fake_app({ACTIVE: 9})
    assert run(app, ACTIVE, messages(ACTIVE, [8, 9])) == [9]
    assert table.applied == [] and app.tables.recovery.active_offsets[ACTIVE] == 9


def test_only_partitions_being_restored_take_this_path():
    app, _ = fake_app({})
    assert bulk_restore.restoring(app, ACTIVE) and bulk_restore.restoring(app, STANDBY)
    assert not bulk_restore.restoring(app, OTHER)
