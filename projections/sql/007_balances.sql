-- Current balances per partner and account: the sum of the partner's ledger entries (FINAL, so
-- duplicate deliveries that are not merged yet count once).
CREATE VIEW IF NOT EXISTS {db}.balances AS
SELECT
    partner_id,
    account,
    sum(delta_available) AS available,
    sum(delta_held)      AS held,
    count()              AS ledger_entries,
    max(seq)             AS last_seq,
    max(occurred_at)     AS last_occurred_at
FROM {db}.ledger FINAL
GROUP BY partner_id, account
