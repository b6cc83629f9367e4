-- One row per alert: ReplacingMergeTree(version) keeps the highest version, so the resolved
-- state (version 2) wins over the raised one (version 1) whatever the order of delivery.
-- occurred_at is the time of the state the row holds (raise, then resolution).
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id         String,
    alert_type       String,
    severity         String,
    partner_id       String,
    trigger_event_id String,
    hold_order_id    Nullable(String),
    evidence         String,
    status           String,
    version          UInt64,
    occurred_at      DateTime('UTC'),
    resolved_by      String,
    held_points      Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id
