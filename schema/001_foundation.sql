-- Foundation: raw log, telemetry, space count history, placements, resets, rejects, registries.
-- Runs on plain PostgreSQL 14+; with TimescaleDB installed the time-series tables become
-- hypertables. Every table that a sink writes has a key made of the record's Kafka source, so a
-- replayed or redelivered batch adds no row twice.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb is available but could not be loaded (%), using plain tables', SQLERRM;
        END;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS dpu_log (
    topic          text        NOT NULL,
    "partition"    integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    kafka_ts       timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    dpu_id         text,
    raw            bytea       NOT NULL,
    PRIMARY KEY (topic, "partition", "offset", kafka_ts)
);

CREATE TABLE IF NOT EXISTS dpu_telemetry (
    dpu_id           text        NOT NULL,
    event_ts         timestamptz NOT NULL,
    direction        smallint    NOT NULL,
    event_id         text,
    ins              bigint      NOT NULL,
    outs             bigint      NOT NULL,
    net              bigint      NOT NULL,
    doorway_id       text,
    placement_at     timestamptz,
    spaces           jsonb       NOT NULL DEFAULT '[]',
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    kafka_ts         timestamptz NOT NULL,
    processed_at     timestamptz NOT NULL DEFAULT now(),
    reconciled_at    timestamptz,
    PRIMARY KEY (source_partition, source_offset, event_ts)
);
CREATE INDEX IF NOT EXISTS dpu_telemetry_dpu_ts ON dpu_telemetry (dpu_id, event_ts);

CREATE TABLE IF NOT EXISTS space_count (
    space_id         text        NOT NULL,
    event_ts         timestamptz NOT NULL,
    dpu_id           text        NOT NULL,
    delta            smallint    NOT NULL,
    count_on_arrival bigint      NOT NULL,
    counted_on_arrival boolean   NOT NULL,
    count_reconciled bigint,
    reconciled_at    timestamptz,
    source           text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    seq              integer     NOT NULL,
    processed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, source, source_partition, source_offset, seq, event_ts)
);
CREATE INDEX IF NOT EXISTS space_count_space_ts ON space_count (space_id, event_ts);

CREATE TABLE IF NOT EXISTS spaces (
    space_id   text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS doorways (
    doorway_id text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dpus (
    dpu_id     text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now()
);

-- Every placement as received: the history that attribution follows (empty spaces = taken down).
CREATE TABLE IF NOT EXISTS dpu_placements (
    dpu_id       text        NOT NULL,
    installed_at timestamptz NOT NULL,
    doorway_id   text,
    spaces       jsonb       NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint  NOT NULL,
    PRIMARY KEY (dpu_id, installed_at)
);

-- The prototype's shape: one row per (dpu, space) of each placement; `current` marks the rows of
-- each DPU's latest placement, `until` the start of the placement that followed.
CREATE TABLE IF NOT EXISTS dpu_location (
    dpu_id     text        NOT NULL,
    space_id   text        NOT NULL,
    doorway_id text,
    installed  timestamptz NOT NULL,
    "until"    timestamptz,
    "current"  boolean     NOT NULL DEFAULT false,
    direction  smallint    NOT NULL CHECK (direction IN (-1, 1)),
    PRIMARY KEY (dpu_id, installed, space_id)
);
CREATE INDEX IF NOT EXISTS dpu_location_space ON dpu_location (space_id, installed);

CREATE TABLE IF NOT EXISTS space_resets (
    space_id text        NOT NULL,
    at       timestamptz NOT NULL,
    count    bigint      NOT NULL,
    PRIMARY KEY (space_id, at)
);

CREATE TABLE IF NOT EXISTS space_daily_resets (
    space_id   text PRIMARY KEY,
    local_time time        NOT NULL,
    tz         text        NOT NULL,
    count      bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dpu_rejects (
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    reason           text        NOT NULL,
    raw              bytea       NOT NULL,
    kafka_ts         timestamptz,
    rejected_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('dpu_log', 'kafka_ts', if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('dpu_telemetry', 'event_ts', if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('space_count', 'event_ts', if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END $$;
