-- What the operator's views need: a daily reset's `since` (the days it applies to), and the key
-- of a rejected record, so that sensor health can count a DPU's rejects.
ALTER TABLE space_daily_resets ADD COLUMN IF NOT EXISTS since timestamptz;
ALTER TABLE dpu_rejects ADD COLUMN IF NOT EXISTS record_key text;
CREATE INDEX IF NOT EXISTS dpu_rejects_by_key ON dpu_rejects (record_key, source_topic)
    WHERE record_key IS NOT NULL;
