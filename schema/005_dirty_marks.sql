-- A dirty mark counts its changes, so that the reconciler need not lock it while it works.
--
-- The reconciler used to hold the marks it took FOR UPDATE for its whole round, and every sink
-- that marked one of those spaces again waited for the round to end (seconds, once the worker's
-- event loop was busy): the space_count sink spent most of its time waiting. Now a mark is
-- read without a lock and deleted afterwards only if no sink changed it meanwhile (same n).
ALTER TABLE space_dirty ADD COLUMN IF NOT EXISTS n bigint NOT NULL DEFAULT 0;
