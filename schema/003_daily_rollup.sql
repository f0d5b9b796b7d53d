-- A daily rollup above the hourly one: count(S, T) then reads one row per day since the latest
-- reset, plus at most two days of hourly rows and two hours of raw rows, whatever the history.

CREATE TABLE IF NOT EXISTS space_count_daily (
    space_id text        NOT NULL,
    day      timestamptz NOT NULL,
    delta    bigint      NOT NULL,
    entries  bigint      NOT NULL,
    exits    bigint      NOT NULL,
    PRIMARY KEY (space_id, day)
);

INSERT INTO space_count_daily (space_id, day, delta, entries, exits)
SELECT space_id, date_trunc('day', hour, 'UTC'), sum(delta), sum(entries), sum(exits)
  FROM space_count_hourly GROUP BY 1, 2
ON CONFLICT (space_id, day) DO NOTHING;
