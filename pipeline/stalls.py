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
    quiet: dict = field(default_factory=dict)
    """Per topic: (its partitions' commits and acks, ticks they have all stood still)."""
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
    """Partitions to read again: their commit stood still STILL_TICKS ticks, records waiting,
    and the head record is lost rather than queued.

    Lost: seen after a rebalance, a record handed to one of the two agents that read the events
    topic but never to the other stays unacknowledged forever, and Faust never commits past it.
    Queued: under a backlog, a partition's next record can wait in an agent's queue for longer
    than the ticks; reading it again then only piles duplicates on the queue (measured: every
    downstream partition re-read every 15 s during a million-event run). The head is lost when
    records after it were acknowledged (agents process a partition in order), or when nothing
    at all was acknowledged on the topic during the ticks (its agents hold nothing to process).
    """
    out, seen, quiet = [], {}, {}
    for topic in {tp.topic for tp in views}:
        state = tuple(sorted((tp.partition, v.committed, v.acked)
                             for tp, v in views.items() if tp.topic == topic))
        last, ticks = watch.quiet.get(topic, (None, 0))
        quiet[topic] = (state, ticks + 1 if last == state else 0)
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
        if passed or quiet[tp.topic][1] >= STILL_TICKS:
            out.append((tp, view.committed, view.high))
            seen[tp] = (view.committed, 0)
            watch.reread_above[tp] = view.high
    watch.still, watch.quiet = seen, quiet
    return out
