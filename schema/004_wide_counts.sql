-- Counts that cannot overflow. A correction moves every crossing of one event at once, and a
-- delta's seq is a Kafka offset plus two (tables/counting.py): smallint and integer would
-- refuse real values, and a refused row is a reject, not a count. Kafka offsets are bigint.

ALTER TABLE space_count
    ALTER COLUMN delta TYPE integer,
    ALTER COLUMN entries TYPE integer,
    ALTER COLUMN exits TYPE integer,
    ALTER COLUMN seq TYPE bigint;
