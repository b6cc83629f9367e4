-- The event log as received: one row per event_id. Deliveries of the same event_id collapse
-- (ReplacingMergeTree, no version: the last inserted copy wins). No PARTITION BY on purpose:
-- rows only collapse within one partition, and a repeated event_id whose fields differ must
-- still end up as one row.
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
ORDER BY event_id
