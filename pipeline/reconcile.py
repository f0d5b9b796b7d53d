"""Continuous reconciliation of ``space_count.count_reconciled`` (SPEC §4).

``count_on_arrival`` is what the pipeline knew when a row was processed; ``count_reconciled`` is
``count(S, row.event_ts)`` as known now, after late events, late resets and re-attributions.
Sinks mark a space dirty from the earliest instant they changed (``space_dirty``, its ``n`` counting
the marks); each round takes some dirty spaces and recomputes the rows from that instant on,
starting from the last row before it (already right) or a reset, whichever is later, then
removes the mark unless a sink marked the space again meanwhile. Work per round is the rows
after the change, not the history. The round itself is a procedure of the schema
(``schema/007_reconcile_procedure.sql``): one call instead of eight statements a space.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import psycopg

MARK_DIRTY = ("ON CONFLICT (space_id) DO UPDATE SET since = LEAST(space_dirty.since, "
              "excluded.since), n = space_dirty.n + 1")
"""Ends a sink's ``INSERT INTO space_dirty (space_id, since)``: a mark keeps its earliest
instant and counts the times it was set, so a round can tell it was set again meanwhile."""

MARK_SPACE = "INSERT INTO space_dirty (space_id, since) VALUES (%s, %s) " + MARK_DIRTY
"""Marks one space from one instant on (a sink's row ``(space_id, since)``)."""


def pause_after(round_s: float, share: float) -> float:
    """The pause after a round of ``round_s`` seconds that leaves the reconciler ``share`` of
    the time (``Settings.reconcile_share``)."""
    return round_s * (1 - share) / share


ROUND_S = 0.05
"""How long a round goes on taking dirty spaces, one at a time, before it pauses. The share of
the database's time is the same whatever the rounds' length, but while a round runs it holds a
core the realtime path needs: after a million events (thousands of rows to recompute per
space), a round of 20 spaces took 0.6–0.7 s on an idle machine, one space 25–56 ms."""


async def reconcile_for(budget_s: float, one_space: Callable[[], Awaitable[int]],
                        clock: Callable[[], float]) -> int:
    """Spaces one at a time (``one_space``) until ``budget_s`` has passed or none was left to
    take; returns how many were recomputed. A space another worker holds ends the round too
    (it is taken first by every worker, being the oldest mark): one reconciler at a time."""
    started, done = clock(), 0
    while True:
        n = await one_space()
        done += n
        if not n or clock() - started >= budget_s:
            return done


async def reconcile_round(conn: psycopg.AsyncConnection, max_spaces: int = 20) -> int:
    """One round over up to ``max_spaces`` dirty spaces; returns how many it recomputed.

    The round runs in the database (``dpu_reconcile_round``, schema/007), one short
    transaction per space, so ``conn`` must be in autocommit mode. A space's mark is deleted
    only if no sink marked it again meanwhile (its ``n`` unchanged): a sink never waits for a
    round. One reconciler at a time works on a space (an advisory lock; another worker's round
    skips it), and reads its mark again under the lock: two at once could each start from an
    anchor row the other was rewriting.
    """
    async with conn.cursor() as cur:
        await cur.execute("CALL dpu_reconcile_round(%s, NULL)", (max_spaces,))
        return (await cur.fetchone())[0]
