-- The program KPIs by period (docs/kpis.md has every definition). Each view has one row per
-- period and group: period_type ('month', 'quarter', 'year'), period ('2026-10', '2026-Q4',
-- '2026'), period_start (Date), and where it makes sense segment and region. Counts of partners
-- are distinct partners; a partner has one segment and region, so counts and sums add up over
-- segments and regions, and a rate is computed from the sums (sum(active) / sum(enrolled)).
-- They read the rollup of 013 only, never the ledger or the events.

-- The grid of 013 with each partner-month in its three periods.
CREATE VIEW IF NOT EXISTS {db}.kpi_partner_periods AS
SELECT
    p.1                                                                    AS period_type,
    p.2                                                                    AS period_start,
    multiIf(p.1 = 'month', substring(toString(p.2), 1, 7),
            p.1 = 'quarter', concat(toString(toYear(p.2)), '-Q', toString(toQuarter(p.2))),
            toString(toYear(p.2)))                                         AS period,
    multiIf(p.1 = 'month', 1, p.1 = 'quarter', 3, 12)                      AS period_months,
    *
FROM {db}.kpi_partner_grid
ARRAY JOIN [('month', month), ('quarter', toStartOfQuarter(month)), ('year', toStartOfYear(month))] AS p;

-- participation rate = active_partners / enrolled_partners
CREATE VIEW IF NOT EXISTS {db}.kpi_participation AS
SELECT
    period_type, period, period_start, segment, region,
    uniqExactIf(partner_id, enrolled)            AS enrolled_partners,
    uniqExactIf(partner_id, active)              AS active_partners
FROM {db}.kpi_partner_periods
GROUP BY period_type, period, period_start, segment, region;

-- redemption rate = points_redeemed / points_awarded; share redeeming = partners_redeeming / enrolled_partners
CREATE VIEW IF NOT EXISTS {db}.kpi_redemption AS
SELECT
    period_type, period, period_start, segment, region,
    sum(points_awarded)                          AS points_awarded,
    sum(points_redeemed)                         AS points_redeemed,
    sum(points_expired)                          AS points_expired,
    sum(redemptions)                             AS redemptions,
    uniqExactIf(partner_id, redeemed)            AS partners_redeeming,
    uniqExactIf(partner_id, enrolled)            AS enrolled_partners
FROM (SELECT *, redemptions > 0 AS redeemed FROM {db}.kpi_partner_periods)
GROUP BY period_type, period, period_start, segment, region;

-- deal registration volume and win rate = deals_won / (deals_won + deals_lost)
CREATE VIEW IF NOT EXISTS {db}.kpi_deals AS
SELECT
    period_type, period, period_start, segment, region,
    sum(deals_registered)                        AS deals_registered,
    sum(deal_volume_cents)                       AS deal_volume_cents,
    sum(deals_won)                               AS deals_won,
    sum(deals_lost)                              AS deals_lost,
    uniqExactIf(partner_id, registered)          AS partners_registering
FROM (SELECT *, deals_registered > 0 AS registered FROM {db}.kpi_partner_periods)
GROUP BY period_type, period, period_start, segment, region;

-- behaviour completion per active partner = trainings / active_partners (and so on)
CREATE VIEW IF NOT EXISTS {db}.kpi_completion AS
SELECT
    period_type, period, period_start, segment, region,
    uniqExactIf(partner_id, active)                  AS active_partners,
    sum(trainings)                                   AS trainings,
    sum(certifications)                              AS certifications,
    sum(marketing_activities)                        AS marketing_activities,
    uniqExactIf(partner_id, trained)                 AS partners_training,
    uniqExactIf(partner_id, certified)               AS partners_certified,
    uniqExactIf(partner_id, marketed)                AS partners_marketing
FROM
(
    SELECT *, trainings > 0 AS trained, certifications > 0 AS certified, marketing_activities > 0 AS marketed
    FROM {db}.kpi_partner_periods
)
GROUP BY period_type, period, period_start, segment, region;

-- net sales of the period, of the period before it (same length) and of the same period a year
-- earlier; growth = net_sales_cents / previous_net_sales_cents - 1 (and so for the year)
CREATE VIEW IF NOT EXISTS {db}.kpi_growth AS
SELECT
    period_type, period, period_start, segment, region,
    net_sales_cents, gross_sales_cents, returns_cents, partners_selling,
    previous_net_sales_cents, year_ago_net_sales_cents
FROM
(
    SELECT
        period_type, period, period_start, segment, region,
        net_sales_cents, gross_sales_cents, returns_cents, partners_selling, previous_net_sales_cents
    FROM
    (
        SELECT period_type, period, period_start, segment, region,
               sum(net_sales_cents) AS net_sales_cents, sum(gross_sales_cents) AS gross_sales_cents,
               sum(returns_cents) AS returns_cents, uniqExactIf(partner_id, sales > 0) AS partners_selling,
               any(period_months) AS months
        FROM {db}.kpi_partner_periods
        GROUP BY period_type, period, period_start, segment, region
    ) AS left_side
    ANY LEFT JOIN
    (
        SELECT period_type, addMonths(start_before, months) AS period_start, segment, region,
               previous_net_sales_cents
        FROM
        (
            SELECT period_type, period_start AS start_before, segment, region, any(period_months) AS months,
                   sum(net_sales_cents) AS previous_net_sales_cents
            FROM {db}.kpi_partner_periods
            GROUP BY period_type, start_before, segment, region
        )
    ) AS right_side USING (period_type, period_start, segment, region)
) AS left_side
ANY LEFT JOIN
(
    SELECT period_type, addMonths(start_year_ago, 12) AS period_start, segment, region, year_ago_net_sales_cents
    FROM
    (
        SELECT period_type, period_start AS start_year_ago, segment, region,
               sum(net_sales_cents) AS year_ago_net_sales_cents
        FROM {db}.kpi_partner_periods
        GROUP BY period_type, start_year_ago, segment, region
    )
) AS right_side USING (period_type, period_start, segment, region);

-- program cost = points_cost_cents + rebate_cents - rebate_forfeited_cents, where
-- points_cost_cents = (points_awarded + points_adjusted - points_clawed_back - points_forfeited)
-- * point_value_cents; incremental net sales = per partner max(0, net sales of the period - its
-- baseline), baseline = max(0, net sales of the 12 months before the period) * period_months / 12
-- (floor); cost per incremental outcome = program_cost_cents / incremental_net_sales_cents.
CREATE VIEW IF NOT EXISTS {db}.kpi_cost AS
SELECT
    period_type, period, period_start, segment, region,
    points_awarded, points_adjusted, points_clawed_back, points_forfeited,
    point_value_cents,
    (points_awarded + points_adjusted - points_clawed_back - points_forfeited) * point_value_cents
                                                                           AS points_cost_cents,
    rebate_cents, rebate_forfeited_cents,
    points_cost_cents + rebate_cents - rebate_forfeited_cents              AS program_cost_cents,
    net_sales_cents, baseline_net_sales_cents, incremental_net_sales_cents
FROM
(
    SELECT
        period_type, period, period_start, segment, region,
        sum(points_awarded) AS points_awarded, sum(points_adjusted) AS points_adjusted,
        sum(points_clawed_back) AS points_clawed_back, sum(points_forfeited) AS points_forfeited,
        sum(rebate_cents) AS rebate_cents, sum(rebate_forfeited_cents) AS rebate_forfeited_cents,
        sum(partner_net_cents) AS net_sales_cents, sum(baseline) AS baseline_net_sales_cents,
        sum(incremental) AS incremental_net_sales_cents
    FROM
    (
        SELECT *, intDiv(greatest(0, before_12_cents) * period_months, 12) AS baseline,
               greatest(0, partner_net_cents - baseline) AS incremental
        FROM
        (
            SELECT
                period_type, period, period_start, partner_id, any(segment) AS segment, any(region) AS region,
                any(period_months) AS period_months,
                sum(points_awarded) AS points_awarded, sum(points_adjusted) AS points_adjusted,
                sum(points_clawed_back) AS points_clawed_back, sum(points_forfeited) AS points_forfeited,
                sum(rebate_cents) AS rebate_cents, sum(rebate_forfeited_cents) AS rebate_forfeited_cents,
                sum(net_sales_cents) AS partner_net_cents
            FROM {db}.kpi_partner_periods
            GROUP BY period_type, period, period_start, partner_id
        ) AS left_side
        ANY LEFT JOIN
        (
            -- per partner and month s of its grid: the net sales of the (up to) 12 months before s,
            -- from its months in order (the grid has no gaps); then s as the start of each period
            SELECT t.1 AS period_type, t.2 AS period_start, partner_id, before_12_cents
            FROM
            (
                SELECT partner_id, months[i] AS s,
                       arraySum(arraySlice(nets, if(i > 12, i - 12, 1), i - if(i > 12, i - 12, 1))) AS before_12_cents
                FROM
                (
                    SELECT partner_id, arraySort(groupArray(month)) AS months,
                           arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((month, net_sales_cents)))) AS nets
                    FROM {db}.kpi_partner_grid
                    GROUP BY partner_id
                )
                ARRAY JOIN arrayEnumerate(months) AS i
            )
            ARRAY JOIN arrayFilter(x -> x.1 = 'month' OR (x.1 = 'quarter' AND toMonth(s) IN (1, 4, 7, 10))
                                        OR (x.1 = 'year' AND toMonth(s) = 1),
                                   [('month', s), ('quarter', s), ('year', s)]) AS t
        ) AS right_side USING (period_type, period_start, partner_id)
    )
    GROUP BY period_type, period, period_start, segment, region
) AS left_side
CROSS JOIN
(
    SELECT argMax(point_value_cents, written_at) AS point_value_cents FROM {db}.program_settings
) AS right_side;

-- tier distribution: each partner's tier at the end of the period (the last month of it known),
-- partners enrolled then
CREATE VIEW IF NOT EXISTS {db}.kpi_tier_distribution AS
SELECT period_type, period, period_start, segment, region, tier, count() AS partners
FROM
(
    SELECT
        p.1 AS period_type,
        p.2 AS period_start,
        multiIf(p.1 = 'month', substring(toString(p.2), 1, 7),
                p.1 = 'quarter', concat(toString(toYear(p.2)), '-Q', toString(toQuarter(p.2))),
                toString(toYear(p.2))) AS period,
        partner_id, any(segment) AS segment, any(region) AS region,
        argMax(tier, month) AS tier, argMax(enrolled, month) AS enrolled_at_end
    FROM {db}.kpi_tier_month_end
    ARRAY JOIN [('month', month), ('quarter', toStartOfQuarter(month)), ('year', toStartOfYear(month))] AS p
    GROUP BY period_type, period_start, period, partner_id
)
WHERE enrolled_at_end
GROUP BY period_type, period, period_start, segment, region, tier;

-- tier progression: changes in the period, from -> to, upgrades and downgrades
CREATE VIEW IF NOT EXISTS {db}.kpi_tier_movements AS
SELECT
    p.1 AS period_type,
    p.2 AS period_start,
    multiIf(p.1 = 'month', substring(toString(p.2), 1, 7),
            p.1 = 'quarter', concat(toString(toYear(p.2)), '-Q', toString(toQuarter(p.2))),
            toString(toYear(p.2))) AS period,
    from_tier, to_tier, direction,
    count() AS changes,
    uniqExact(partner_id) AS partners
FROM {db}.kpi_tier_changes
ARRAY JOIN [('month', month), ('quarter', toStartOfQuarter(month)), ('year', toStartOfYear(month))] AS p
GROUP BY period_type, period_start, period, from_tier, to_tier, direction;

-- retention of top-tier partners: of the partners gold or platinum (and enrolled) at the end of
-- the month before the period (top_tier_at_start), those active in the period, still enrolled in its last month
-- and at the end of it in a tier at least as high (retained); rate = retained / top_tier_at_start
CREATE VIEW IF NOT EXISTS {db}.kpi_retention AS
SELECT
    period_type, period, period_start, segment, region,
    count() AS top_tier_at_start,
    countIf(active_in_period AND enrolled_at_end AND end_rank >= start_rank) AS retained
FROM
(
    SELECT *
    FROM
    (
        SELECT *
        FROM
        (
            SELECT period_type, period_start, partner_id,
                   transform(tier, ['registered', 'silver', 'gold', 'platinum'], [0, 1, 2, 3], 0) AS start_rank
            FROM
            (
                SELECT t.1 AS period_type, t.2 AS period_start, partner_id, tier
                FROM
                (
                    SELECT partner_id, tier, addMonths(month, 1) AS s
                    FROM {db}.kpi_tier_month_end
                    WHERE tier IN ('gold', 'platinum') AND enrolled
                )
                ARRAY JOIN arrayFilter(x -> x.1 = 'month' OR (x.1 = 'quarter' AND toMonth(s) IN (1, 4, 7, 10))
                                            OR (x.1 = 'year' AND toMonth(s) = 1),
                                       [('month', s), ('quarter', s), ('year', s)]) AS t
            )
        ) AS left_side
        ANY INNER JOIN
        (
            SELECT period_type, period, period_start, partner_id, any(segment) AS segment, any(region) AS region,
                   max(active) AS active_in_period, argMax(enrolled, month) AS enrolled_at_end
            FROM {db}.kpi_partner_periods
            GROUP BY period_type, period, period_start, partner_id
        ) AS right_side USING (period_type, period_start, partner_id)
    ) AS left_side
    ANY LEFT JOIN
    (
        SELECT period_type, period_start, partner_id,
               transform(argMax(tier, month), ['registered', 'silver', 'gold', 'platinum'], [0, 1, 2, 3], 0)
                   AS end_rank
        FROM
        (
            SELECT p.1 AS period_type, p.2 AS period_start, partner_id, tier, month
            FROM {db}.kpi_tier_month_end
            ARRAY JOIN [('month', month), ('quarter', toStartOfQuarter(month)), ('year', toStartOfYear(month))] AS p
        )
        GROUP BY period_type, period_start, partner_id
    ) AS right_side USING (period_type, period_start, partner_id)
)
GROUP BY period_type, period, period_start, segment, region;

-- time to first value: partners by enrolment cohort (the period they first enrolled in), those
-- with points earned yet, and the days from enrolment to their first points (median, p90)
CREATE VIEW IF NOT EXISTS {db}.kpi_time_to_first_value AS
SELECT
    p.1 AS period_type,
    p.2 AS period_start,
    multiIf(p.1 = 'month', substring(toString(p.2), 1, 7),
            p.1 = 'quarter', concat(toString(toYear(p.2)), '-Q', toString(toQuarter(p.2))),
            toString(toYear(p.2))) AS period,
    count() AS partners_enrolled,
    countIf(has_points) AS partners_with_points,
    quantileExactIf(0.5)(days, has_points) AS median_days,
    quantileExactIf(0.9)(days, has_points) AS p90_days
FROM
(
    SELECT cohort_month, first_points_at > toDateTime(0, 'UTC') AS has_points,
           (toUInt32(first_points_at) - toUInt32(enrolled_at)) / 86400 AS days
    FROM {db}.kpi_partners
    WHERE enrolled_at > toDateTime(0, 'UTC')
)
ARRAY JOIN [('month', cohort_month), ('quarter', toStartOfQuarter(cohort_month)),
            ('year', toStartOfYear(cohort_month))] AS p
GROUP BY period_type, period_start, period;

-- anomalies: alerts raised in the period by type and severity, their state now, the points they
-- held when raised; forfeited points are in kpi_cost
CREATE VIEW IF NOT EXISTS {db}.kpi_anomalies AS
SELECT
    p.1 AS period_type,
    p.2 AS period_start,
    multiIf(p.1 = 'month', substring(toString(p.2), 1, 7),
            p.1 = 'quarter', concat(toString(toYear(p.2)), '-Q', toString(toQuarter(p.2))),
            toString(toYear(p.2))) AS period,
    alert_type, severity,
    count() AS raised,
    countIf(status = 'open') AS open,
    countIf(status = 'confirmed') AS confirmed,
    countIf(status = 'dismissed') AS dismissed,
    sum(held_points) AS held_points_raised,
    sumIf(held_points, status = 'open') AS held_points_open,
    sumIf(held_points, status = 'confirmed') AS held_points_forfeited
FROM {db}.kpi_alerts
ARRAY JOIN [('month', month), ('quarter', toStartOfQuarter(month)), ('year', toStartOfYear(month))] AS p
GROUP BY period_type, period_start, period, alert_type, severity;

-- open alerts and their age now, in days
CREATE VIEW IF NOT EXISTS {db}.kpi_open_alerts AS
SELECT alert_id, alert_type, severity, partner_id, raised_at, held_points,
       greatest(0, toInt64(toUInt32(now())) - toInt64(toUInt32(raised_at))) / 86400 AS age_days
FROM {db}.kpi_alerts
WHERE status = 'open';
