-- Ledger totals per partner and calendar month (UTC) of occurred_at. Points figures are the
-- total movement (available + held) of the points account, positive numbers for what left the
-- partner (clawed back, redeemed, expired, forfeited); points_held is what holds moved into held.
-- rebate_cents is the rebate earned at period closes. Sales figures are not in the ledger; the
-- program KPI views come from the events table.
CREATE VIEW IF NOT EXISTS {db}.monthly_partner_kpis AS
SELECT
    partner_id,
    toStartOfMonth(occurred_at) AS month,
    sumIf(delta_available + delta_held, account = 'points' AND kind = 'earn')     AS points_earned,
    sumIf(delta_available + delta_held, account = 'points' AND kind = 'bonus')    AS points_bonus,
    sumIf(delta_available + delta_held, account = 'points' AND kind = 'spiff')    AS points_spiff,
    -sumIf(delta_available + delta_held, account = 'points' AND kind = 'clawback') AS points_clawed_back,
    -sumIf(delta_available + delta_held, account = 'points' AND kind = 'redeem')   AS points_redeemed,
    -sumIf(delta_available + delta_held, account = 'points' AND kind = 'expire')   AS points_expired,
    sumIf(delta_available + delta_held, account = 'points' AND kind = 'adjust')   AS points_adjusted,
    -sumIf(delta_available + delta_held, account = 'points' AND kind = 'forfeit')  AS points_forfeited,
    sumIf(delta_held, account = 'points' AND kind = 'hold')                       AS points_held,
    sumIf(delta_available + delta_held, account = 'rebate' AND kind = 'rebate')   AS rebate_cents,
    count()                                                                       AS ledger_entries
FROM {db}.ledger FINAL
GROUP BY partner_id, month
