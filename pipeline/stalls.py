"""When the commit watchdog reads a partition again: pure rules over what it sees at each tick
(``agents.commit_watchdog`` gathers the views from Faust's consumer and does the reading)."""

from __future__ import annotations

from dataclasses import dataclass, field

STILL_TICKS = 3
"""Ticks a partition's commit may stand still, records waiting, before it is read again."""


@dataclass
class Watch:
    """What the previous ticks saw; re-reading is idempotent, so this is only a heuristic."""

    gaps: dict = field(default_factory=dict)
    """Ack gaps seen at the previous tick."""
    still: dict = field(default_factory=dict)
    """Per partition: (committed offset, ticks it has not moved while records wait)."""
    quiet: tuple = (None, 0)
    """Every partition's commit and acks, and the ticks they have all stood still."""
    reread_above: dict = field(default_factory=dict)
    """Per partition read again: its high watermark then. Records up to it may still wait in
    the agents' queues from before the re-read and be acknowledged ahead of the re-read head."""


@dataclass(frozen=True)
class PartitionView:
    """One partition as the watchdog sees it at a tick."""

    committed: int
    """The group's committed offset: the next record to acknowledge."""
    high: int
    """The partition's high watermark."""
    acked: tuple[int, int] | None
    """Lowest and highest acknowledged offset above the commit, None if none."""


def standing_still(views: dict, watch: Watch) -> list:
    """Partitions to read again, ``(tp, committed, high, why)``: their commit stood still
    STILL_TICKS ticks, records waiting, and the head record is lost rather than queued.

    Lost: seen after a rebalance, a record handed to one of the two agents that read the events
    topic but never to the other stays unacknowledged forever, and Faust never commits past it.
    Queued: under a backlog, a downstream partition's next record can wait longer than the ticks,
    unfetched or in an agent's queue, while the counting agent holds the fetcher; reading it
    again then only piles duplicates on (measured: every downstream partition re-read every 15 s
    during a million-event run). The head is lost when records after it were acknowledged
    (agents process a partition in order), or when the worker acknowledged nothing at all during
    the ticks (nothing else holds its agents). A lost head that is its partition's last record
    while other partitions stay busy waits for the next record on its partition.
    """
    out, seen = [], {}
    state = sorted((tp.topic, tp.partition, v.committed, v.acked) for tp, v in views.items())
    last, quiet_ticks = watch.quiet
    quiet_ticks = quiet_ticks + 1 if last == state else 0
    for tp, view in views.items():
        mark = watch.reread_above.get(tp)
        if mark is not None and view.committed > mark:
            del watch.reread_above[tp]
            mark = None
        if view.high <= view.committed:
            continue
        last, ticks = watch.still.get(tp, (None, 0))
        ticks = ticks + 1 if last == view.committed else 0
        seen[tp] = (view.committed, ticks)
        if ticks < STILL_TICKS:
            continue
        passed = (view.acked is not None and view.acked[0] > view.committed
                  and view.acked[1] > (mark if mark is not None else -1))
        if passed or quiet_ticks >= STILL_TICKS:
            why = "records after it acknowledged" if passed else "the worker idle"
            out.append((tp, view.committed, view.high, why))
            seen[tp] = (view.committed, 0)
            watch.reread_above[tp] = view.high
    watch.still, watch.quiet = seen, (state, quiet_ticks)
    return out


def after_reading_through(ranges: dict, found: dict, committed_now: dict,
                          stalled: dict) -> tuple[list, list]:
    """What to do with each range read through: ``(gaps, read_again)``.

    ``ranges``: per partition the ``(start, end)`` decided on at the tick, ``start`` its
    committed offset then; ``found``: the offsets of the records in it; ``committed_now``: the
    committed offsets after the reading. A range of transaction markers only is a gap where
    acknowledgements wait for it (``stalled``); a partition committed past ``start`` while the
    range was read was not stalled after all (a slow database write held its sink's
    acknowledgements): reading it again from ``start`` would redo everything since. The rest
    is read again.
    """
    gaps, read_again = [], []
    for tp, (start, end) in ranges.items():
        if not any(start <= offset < end for offset in found.get(tp, ())):
            if tp in stalled:
                gaps.append((tp, start, end))
        elif committed_now.get(tp) == start:
            read_again.append((tp, start))
    return gaps, read_again
