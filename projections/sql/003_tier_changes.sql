-- Tier history; change_id is "{partner_id}:{source_event_id}:{to_tier}".
CREATE TABLE IF NOT EXISTS {db}.tier_changes
(
    change_id       String,
    partner_id      String,
    from_tier       String,
    to_tier         String,
    reason          String,
    source_event_id String,
    occurred_at     DateTime('UTC'),
    rules_version   String
)
ENGINE = ReplacingMergeTree
ORDER BY change_id
