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

import psycopg

MARK_DIRTY = ("ON CONFLICT (space_id) DO UPDATE SET since = LEAST(space_dirty.since, "
              "excluded.since), n = space_dirty.n + 1")
"""Ends a sink's ``INSERT INTO space_dirty (space_id, since)``: a mark keeps its earliest
instant and counts the times it was set, so a round can tell it was set again meanwhile."""


def pause_after(round_s: float, share: float, live: bool = True) -> float:
    """The pause after a round of ``round_s`` seconds that leaves the reconciler ``share`` of
    the time (``Settings.reconcile_share``) while events are being counted (``live``); none
    when the worker counted nothing during the round: then no realtime count waits for it."""
    return round_s * (1 - share) / share if live else 0.0


ROUND_S = 0.1
"""How long a round should take. While a round runs PostgreSQL holds a core, which on a small
host is half of what the realtime path has: a round of 20 spaces after a burst (thousands of
rows each) took up to 1.15 s, and the probes sent meanwhile queued behind it. The pause after
a round (``pause_after``) is proportional, so short rounds keep the same share of the time."""

MAX_ROUND_SPACES = 200


class RoundSize:
    """Dirty spaces per round, adapted to the time the last round took so that rounds last
    about ``round_s``: a space's cost is the rows after its mark, from a few to thousands."""

    def __init__(self, round_s: float = ROUND_S, first: int = 1,
                 most: int = MAX_ROUND_SPACES) -> None:
        self.round_s, self.most = round_s, most
        self.spaces = first

    def took(self, spaces: int, seconds: float) -> None:
        """A round recomputed ``spaces`` in ``seconds``."""
        if spaces <= 0:
            return
        per_space = max(seconds, 1e-6) / spaces
        self.spaces = max(1, min(self.most, int(self.round_s / per_space)))


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
