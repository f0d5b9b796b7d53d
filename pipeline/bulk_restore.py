"""Changelog records applied to their table a fetched partition at a time while it is restored.

Faust hands each changelog record to its recovery loop on its own: in the drain loop two tasks
and an ``asyncio.wait`` per record, a lock in the conductor, a queue, then in
``Recovery._slurp_changelogs`` an ``asyncio.wait_for`` and a scan of every partition's
remaining records per record: about 165 µs a record. Here the drain loop
(``pipeline.bulk_input``) hands a partition's fetched records to :func:`restore`, which decodes
them through the table's own changelog channel and applies them in one batch, in offset order,
through the table's own ``apply_changelog_batch`` (so ``tables.fenced`` skips stale records as
before).

Faust's recovery loop keeps its part: the fetch's last record is also handed to it, as it would
be, and since its offset is already recorded as applied, the loop only checks, as after any
record, whether recovery is done, and then ends it.
"""

from __future__ import annotations

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import AppT, Message, TP

from pipeline.faust_fixes import verified
from pipeline.metrics import metrics


def verify_relied_on() -> None:
    """The recovery loop skips a record whose offset is recorded as applied, then checks
    whether recovery is done; its buffers, offsets and partitions are read and written here."""
    verified(Recovery, "_slurp_changelogs", "7e3120dad754763d")
    verified(TableManager, "_update_channels", "c43fe8c0812bf9cb")  # its ``_channels``


def restoring(app: AppT, tp: TP) -> bool:
    """Whether ``tp`` is a changelog partition being restored (actively, or as a standby)."""
    recovery = app.tables.recovery
    return tp in recovery.active_tps or tp in recovery.standby_tps


async def restore(app: AppT, tp: TP, messages: list[Message], deliver) -> None:
    """Apply the fetched records of changelog partition ``tp`` that were not yet applied, then
    give the last to Faust's recovery loop (``deliver``) to check whether recovery is done."""
    recovery = app.tables.recovery
    offsets = recovery.active_offsets if tp in recovery.active_tps else recovery.standby_offsets
    table = recovery.tp_to_table[tp]
    seen = offsets.get(tp)
    fresh = [m for m in messages if seen is None or m.offset > seen]
    if fresh:
        buffered = recovery.buffers.get(table)
        if buffered:  # records Faust's loop took before: older, so applied first
            table.apply_changelog_batch(buffered)
            buffered.clear()
        decode = app.tables._channels[table].decode
        table.apply_changelog_batch([await decode(message) for message in fresh])
        offsets[tp] = fresh[-1].offset
        metrics.changelog_records_restored.inc(len(fresh))
    await deliver(messages[-1])
