"""Continuous reconciliation of ``space_count.count_reconciled`` (SPEC §4).

``count_on_arrival`` is what the pipeline knew when a row was processed; ``count_reconciled`` is
``count(S, row.event_ts)`` as known now, after late events, late resets and re-attributions.
Sinks mark a space dirty from the earliest instant they changed (``space_dirty``, its ``n`` counting
the marks); each round takes some dirty spaces and recomputes the rows from that instant on,
starting from the last row before it (already right) or a reset, whichever is later, then
removes the mark unless a sink marked the space again meanwhile. Work per round is the rows
after the change, not the history.
"""

from __future__ import annotations

import psycopg

MARK_DIRTY = ("ON CONFLICT (space_id) DO UPDATE SET since = LEAST(space_dirty.since, "
              "excluded.since), n = space_dirty.n + 1")
"""Ends a sink's ``INSERT INTO space_dirty (space_id, since)``: a mark keeps its earliest
instant and counts the times it was set, so a round can tell it was set again meanwhile."""

ANCHOR_ROW = ("SELECT event_ts, count_reconciled FROM space_count WHERE space_id = %s "
              "AND event_ts < %s ORDER BY event_ts DESC LIMIT 1")
ANCHOR_RESET = ("SELECT at, count FROM space_resets WHERE space_id = %s AND at <= %s "
                "ORDER BY at DESC LIMIT 1")

# For each row from `since` on: the value of its segment's start (the latest reset at or before
# it, or the anchor if that is later) plus the deltas after that start up to the row's instant
# (RANGE: rows at the same instant share the value, as count(S, T) includes every event at T).
RECOMPUTE = """
WITH w AS (
  SELECT s.source, s.source_partition, s.source_offset, s.seq, s.event_ts,
         CASE WHEN rs.at IS NOT NULL AND (%(a_ts)s::timestamptz IS NULL OR rs.at >= %(a_ts)s)
              THEN rs.count ELSE %(a_val)s END
         + SUM(CASE WHEN s.event_ts > COALESCE(GREATEST(rs.at, %(a_ts)s::timestamptz), '-infinity')
                    THEN s.delta ELSE 0 END)
           OVER (PARTITION BY GREATEST(rs.at, %(a_ts)s::timestamptz) ORDER BY s.event_ts
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
    FROM space_count s
    LEFT JOIN LATERAL (SELECT r.at, r.count FROM space_resets r
                        WHERE r.space_id = s.space_id AND r.at <= s.event_ts
                        ORDER BY r.at DESC LIMIT 1) rs ON true
   WHERE s.space_id = %(space)s AND s.event_ts >= %(since)s
)
UPDATE space_count sc SET count_reconciled = w.c, reconciled_at = now()
  FROM w
 WHERE sc.space_id = %(space)s AND sc.source = w.source
   AND sc.source_partition = w.source_partition AND sc.source_offset = w.source_offset
   AND sc.seq = w.seq AND sc.event_ts = w.event_ts
   AND sc.count_reconciled IS DISTINCT FROM w.c
"""


async def reconcile_space(cur: psycopg.AsyncCursor, space_id: str, since) -> int:
    """Recompute ``count_reconciled`` of ``space_id``'s rows from ``since`` on; rows changed."""
    await cur.execute(ANCHOR_ROW, (space_id, since))
    row = await cur.fetchone()
    await cur.execute(ANCHOR_RESET, (space_id, since))
    reset = await cur.fetchone()
    anchor = (None, 0)
    if row is not None and row[1] is not None:
        anchor = (row[0], row[1])
    if reset is not None and (anchor[0] is None or reset[0] >= anchor[0]):
        anchor = (reset[0], reset[1])
    await cur.execute(RECOMPUTE, {"space": space_id, "since": since, "a_ts": anchor[0],
                                  "a_val": anchor[1]})
    return cur.rowcount


RECONCILE_LOCK = 0x64707572
"""The first half of the advisory lock a round takes per space (the second: the space's hash)."""


async def reconcile_round(conn: psycopg.AsyncConnection, max_spaces: int = 200) -> int:
    """One round over up to ``max_spaces`` dirty spaces; returns how many it recomputed.

    Each space is recomputed in a short transaction of its own, and its mark deleted only if
    no sink marked it again meanwhile (its ``n`` unchanged): a sink never waits for a round.
    One reconciler at a time works on a space (an advisory lock; another worker's round skips
    it), and reads its mark again under the lock: two at once could each start from an anchor
    row the other was rewriting.
    """
    async with conn.cursor() as cur:
        await cur.execute("SELECT space_id FROM space_dirty ORDER BY since LIMIT %s",
                          (max_spaces,))
        dirty = [space_id for space_id, in await cur.fetchall()]
    done = 0
    for space_id in dirty:
        async with conn.transaction():
            async with conn.cursor() as cur:
                await cur.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(current_schema()"
                                  " || '.' || %s))", (RECONCILE_LOCK, space_id))
                if not (await cur.fetchone())[0]:
                    continue
                await cur.execute("SELECT since, n FROM space_dirty WHERE space_id = %s",
                                  (space_id,))
                mark = await cur.fetchone()
                if mark is None:
                    continue
                since, n = mark
                await reconcile_space(cur, space_id, since)
                await cur.execute("DELETE FROM space_dirty WHERE space_id = %s AND n = %s",
                                  (space_id, n))
                done += 1
    return done
