-- One reconciliation round in the database: a CALL instead of eight statements per dirty space.
--
-- For each dirty space (oldest mark first), in a transaction of its own: take the space's
-- advisory lock or skip it (another worker's round has it), read its mark again under the lock,
-- recompute count_reconciled from the mark's instant on, starting from the last row before it
-- (already right) or the latest reset at or before it, whichever is later, and delete the mark
-- unless a sink marked the space again meanwhile (its n changed). pipeline/reconcile.py calls it.
CREATE OR REPLACE PROCEDURE dpu_reconcile_round(max_spaces integer, INOUT reconciled integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_spaces text[];
    v_space text;
    v_since timestamptz;
    v_n bigint;
    v_anchor_at timestamptz;
    v_anchor_count bigint;
    v_reset_at timestamptz;
    v_reset_count bigint;
BEGIN
    reconciled := 0;
    SELECT array_agg(space_id ORDER BY since) INTO v_spaces
      FROM (SELECT space_id, since FROM space_dirty ORDER BY since LIMIT max_spaces) d;
    COMMIT;
    FOREACH v_space IN ARRAY coalesce(v_spaces, '{}') LOOP
        -- 0x64707572: the lock's first half, the same in every schema; the second, the space.
        IF pg_try_advisory_xact_lock(1685091698,
                                     hashtext(current_schema() || '.' || v_space)) THEN
            SELECT since, n INTO v_since, v_n FROM space_dirty WHERE space_id = v_space;
            IF FOUND THEN
                SELECT event_ts, count_reconciled INTO v_anchor_at, v_anchor_count
                  FROM space_count WHERE space_id = v_space AND event_ts < v_since
                 ORDER BY event_ts DESC LIMIT 1;
                IF v_anchor_count IS NULL THEN
                    v_anchor_at := NULL;
                    v_anchor_count := 0;
                END IF;
                SELECT at, count INTO v_reset_at, v_reset_count
                  FROM space_resets WHERE space_id = v_space AND at <= v_since
                 ORDER BY at DESC LIMIT 1;
                IF v_reset_at IS NOT NULL
                   AND (v_anchor_at IS NULL OR v_reset_at >= v_anchor_at) THEN
                    v_anchor_at := v_reset_at;
                    v_anchor_count := v_reset_count;
                END IF;
                -- For each row from the mark on: its segment's start (the latest reset at or
                -- before it, or the anchor if that is later) plus the deltas after that start up
                -- to the row's instant (RANGE: rows at one instant share the value, as
                -- count(S, T) includes every event at T).
                WITH w AS (
                  SELECT s.source, s.source_partition, s.source_offset, s.seq, s.event_ts,
                         CASE WHEN rs.at IS NOT NULL AND (v_anchor_at IS NULL OR rs.at >= v_anchor_at)
                              THEN rs.count ELSE v_anchor_count END
                         + SUM(CASE WHEN s.event_ts > COALESCE(GREATEST(rs.at, v_anchor_at), '-infinity')
                                    THEN s.delta ELSE 0 END)
                           OVER (PARTITION BY GREATEST(rs.at, v_anchor_at) ORDER BY s.event_ts
                                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
                    FROM space_count s
                    LEFT JOIN LATERAL (SELECT r.at, r.count FROM space_resets r
                                        WHERE r.space_id = s.space_id AND r.at <= s.event_ts
                                        ORDER BY r.at DESC LIMIT 1) rs ON true
                   WHERE s.space_id = v_space AND s.event_ts >= v_since
                )
                UPDATE space_count sc SET count_reconciled = w.c, reconciled_at = now()
                  FROM w
                 WHERE sc.space_id = v_space AND sc.source = w.source
                   AND sc.source_partition = w.source_partition
                   AND sc.source_offset = w.source_offset
                   AND sc.seq = w.seq AND sc.event_ts = w.event_ts
                   AND sc.count_reconciled IS DISTINCT FROM w.c;
                DELETE FROM space_dirty WHERE space_id = v_space AND n = v_n;
                reconciled := reconciled + 1;
            END IF;
        END IF;
        COMMIT;
    END LOOP;
END $$;
