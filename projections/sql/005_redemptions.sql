-- Redemption decisions. A redemption_id is idempotent per partner (stage 1 is keyed by
-- partner), so the key includes partner_id.
CREATE TABLE IF NOT EXISTS {db}.redemptions
(
    redemption_id   String,
    partner_id      String,
    decision        String,
    reason          String,
    reward          String,
    points          Int64,
    source_event_id String,
    occurred_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (partner_id, redemption_id)
