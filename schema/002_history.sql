-- History that answers as-of and series questions fast, and its continuous reconciliation.
--
-- space_count gains the entries/exits each row adds (a re-attribution moves entries and exits,
-- not only the net), an hourly rollup that the space_count sink maintains in the same
-- transaction as the rows it inserts (only rows actually inserted are added, so redelivered
-- batches add nothing), and the set of spaces whose reconciled counts are stale from an instant on.

ALTER TABLE space_count ADD COLUMN IF NOT EXISTS entries smallint NOT NULL DEFAULT 0;
ALTER TABLE space_count ADD COLUMN IF NOT EXISTS exits smallint NOT NULL DEFAULT 0;
UPDATE space_count SET entries = GREATEST(delta, 0), exits = GREATEST(-delta, 0)
 WHERE entries = 0 AND exits = 0 AND delta <> 0;

CREATE TABLE IF NOT EXISTS space_count_hourly (
    space_id text        NOT NULL,
    hour     timestamptz NOT NULL,
    delta    bigint      NOT NULL,
    entries  bigint      NOT NULL,
    exits    bigint      NOT NULL,
    PRIMARY KEY (space_id, hour)
);

INSERT INTO space_count_hourly (space_id, hour, delta, entries, exits)
SELECT space_id, date_trunc('hour', event_ts, 'UTC'), sum(delta), sum(entries), sum(exits)
  FROM space_count GROUP BY 1, 2
ON CONFLICT (space_id, hour) DO NOTHING;

CREATE TABLE IF NOT EXISTS space_dirty (
    space_id text        PRIMARY KEY,
    since    timestamptz NOT NULL
);

INSERT INTO space_dirty (space_id, since)
SELECT space_id, min(event_ts) FROM space_count WHERE count_reconciled IS NULL GROUP BY 1
ON CONFLICT (space_id) DO NOTHING;
