-- Ledger entries (SPEC section 6, docs/records.md), one row per (partner_id, seq); entry_id is
-- "{partner_id}:{seq}", so the key is the entry's deterministic id. Balances are sums over FINAL.
CREATE TABLE IF NOT EXISTS {db}.ledger
(
    entry_id          String,
    partner_id        String,
    seq               UInt64,
    account           String,
    kind              String,
    delta_available   Int64,
    delta_held        Int64,
    balance_available Int64,
    balance_held      Int64,
    rule_id           String,
    rules_version     String,
    source_event_id   String,
    occurred_at       DateTime('UTC'),
    explanation       String,
    prev_hash         String,
    hash              String
)
ENGINE = ReplacingMergeTree
ORDER BY (partner_id, seq)
