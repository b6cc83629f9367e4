-- When an alert was raised. A resolved alert's row (version 2) carries the resolution's time in
-- occurred_at, and ReplacingMergeTree keeps only that row, so the raise time must travel with the
-- record (`raised_at`, stage 1 publishes it). Rows written before it existed read occurred_at.

-- when: SELECT count() = 0 FROM system.columns WHERE database = '{db}' AND table = 'alerts' AND name = 'raised_at'
ALTER TABLE {db}.alerts ADD COLUMN raised_at DateTime('UTC') DEFAULT occurred_at;
