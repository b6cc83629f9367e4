-- The events table of 001 is keyed by event_id alone, so one event_id sent by two partners
-- collapsed to one row; the dedup rule is per partner (SPEC section 9). Replace it by a table
-- keyed (partner_id, event_id), keeping its rows. 001 stays as it was (it is applied already in
-- existing databases); a new database runs 001 and then this, on an empty table.
--
-- Every step is safe to repeat after a run that stopped half way (and after a run that finished
-- but was not recorded): each guard reads the state of the schema itself.
--   1. the old table (sorting key `event_id`) is renamed out of the way; skipped once `events`
--      is the new table, or when a previous run renamed it already;
--   2. the new `events` is created (IF NOT EXISTS); the sink writes here from now on (between
--      1 and 2 its inserts fail with "unknown table" and are retried);
--   3. every stored row of the old table is copied (without FINAL: copies of one event_id that
--      the old key had not merged yet are kept, per partner). Repeating the copy only adds
--      copies that the ReplacingMergeTree collapses (reads use FINAL);
--   4. the old table is dropped: everything it held is in the new one.

-- when: SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'events' AND sorting_key = 'event_id'
RENAME TABLE {db}.events TO {db}.events_keyed_by_event_id;

CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id        String,
    event_type      String,
    partner_id      String,
    occurred_at     DateTime('UTC'),
    source          String,
    payload         String,
    kafka_topic     String,
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (partner_id, event_id);

-- when: SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'events_keyed_by_event_id'
INSERT INTO {db}.events
    (event_id, event_type, partner_id, occurred_at, source, payload, kafka_topic, kafka_partition, kafka_offset)
SELECT event_id, event_type, partner_id, occurred_at, source, payload, kafka_topic, kafka_partition, kafka_offset
FROM {db}.events_keyed_by_event_id;

DROP TABLE IF EXISTS {db}.events_keyed_by_event_id;
