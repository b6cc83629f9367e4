-- The program KPIs (docs/kpis.md) read a rollup: one row per partner and calendar month (UTC) of
-- occurred_at, rebuilt from the ledger and the events by projections/kpi.py (the sink runs it for
-- the partner-months of every batch before it commits the batch's offsets). A rebuild reads its
-- sources with FINAL, so it is exact whatever copies they hold, and writing it again only adds a
-- copy of the same row. `version` counts what the rebuild read: the partner-month's distinct events
-- and ledger entries, plus its events found refused (a `rejections` row). All only grow, so a
-- rebuild that read more has a higher version, equal versions read the same rows, and
-- ReplacingMergeTree(version) keeps the most complete, whichever order two sinks write them in.
-- Datetimes that do not apply are 1970-01-01 00:00:00 (0).
CREATE TABLE IF NOT EXISTS {db}.kpi_partner_month
(
    partner_id            String,
    month                 Date,
    version               UInt64,
    enrolled_at           DateTime('UTC'),
    segment               String,
    region                String,
    offboarded_at         DateTime('UTC'),
    sales                 UInt64,
    gross_sales_cents     Int64,
    returns_cents         Int64,
    deals_registered      UInt64,
    deal_volume_cents     Int64,
    deals_won             UInt64,
    deals_lost            UInt64,
    trainings             UInt64,
    certifications        UInt64,
    marketing_activities  UInt64,
    points_earned         Int64,
    points_bonus          Int64,
    points_spiff          Int64,
    points_clawed_back    Int64,
    points_redeemed       Int64,
    redemptions           UInt64,
    points_expired        Int64,
    points_adjusted       Int64,
    points_held           Int64,
    points_released       Int64,
    points_forfeited      Int64,
    rebate_cents          Int64,
    rebate_forfeited_cents Int64,
    first_points_at       DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(month)
ORDER BY (partner_id, month);

-- The program's value of a point, written by the sink when it starts (from the program file).
CREATE TABLE IF NOT EXISTS {db}.program_settings
(
    rules_version     String,
    point_value_cents UInt64,
    written_at        DateTime('UTC')
)
ENGINE = ReplacingMergeTree(written_at)
ORDER BY rules_version;

-- One row per partner: first enrolment, its segment and region, last offboarding, first points.
CREATE VIEW IF NOT EXISTS {db}.kpi_partners AS
SELECT
    partner_id,
    enrolled_first                      AS enrolled_at,
    enrolled_last                       AS last_enrolled_at,
    toDate(toStartOfMonth(enrolled_first)) AS cohort_month,
    segment_first                       AS segment,
    region_first                        AS region,
    offboarded_last                     AS offboarded_at,
    points_first                        AS first_points_at
FROM
(
    SELECT
        partner_id,
        minIf(enrolled_at, enrolled_at > toDateTime(0, 'UTC'))             AS enrolled_first,
        maxIf(enrolled_at, enrolled_at > toDateTime(0, 'UTC'))             AS enrolled_last,
        argMinIf(segment, enrolled_at, enrolled_at > toDateTime(0, 'UTC')) AS segment_first,
        argMinIf(region, enrolled_at, enrolled_at > toDateTime(0, 'UTC'))  AS region_first,
        maxIf(offboarded_at, offboarded_at > toDateTime(0, 'UTC'))         AS offboarded_last,
        minIf(first_points_at, first_points_at > toDateTime(0, 'UTC'))     AS points_first
    FROM {db}.kpi_partner_month FINAL
    GROUP BY partner_id
);

-- Every month the rollup knows, from the first to the last, without gaps.
CREATE VIEW IF NOT EXISTS {db}.kpi_months AS
SELECT addMonths(first_month, number) AS month
FROM
(
    SELECT min(month) AS first_month, max(month) AS last_month, count() AS n FROM {db}.kpi_partner_month
    HAVING n > 0
)
ARRAY JOIN range(toUInt64(greatest(0, (toYear(last_month) - toYear(first_month)) * 12
                                         + toMonth(last_month) - toMonth(first_month) + 1))) AS number;

-- The grid every period KPI reads: one row per partner and month from the month it first
-- enrolled to the last month known, with that month's figures (0 when it had none), its segment
-- and region, and `enrolled`: enrolled at some time in the month (not offboarded before it began).
CREATE VIEW IF NOT EXISTS {db}.kpi_partner_grid AS
SELECT
    month,
    partner_id,
    segment,
    region,
    enrolled_at,
    enrolled,
    sales,
    gross_sales_cents,
    returns_cents,
    gross_sales_cents - returns_cents                                      AS net_sales_cents,
    deals_registered,
    deal_volume_cents,
    deals_won,
    deals_lost,
    trainings,
    certifications,
    marketing_activities,
    sales + trainings + marketing_activities + deals_registered > 0       AS active,
    points_earned,
    points_bonus,
    points_spiff,
    points_earned + points_bonus + points_spiff                            AS points_awarded,
    points_clawed_back,
    points_redeemed,
    redemptions,
    points_expired,
    points_adjusted,
    points_held,
    points_released,
    points_forfeited,
    rebate_cents,
    rebate_forfeited_cents
FROM
(
    SELECT
        month, partner_id, segment, region, enrolled_at,
        NOT (offboarded_at > toDateTime(0, 'UTC') AND offboarded_at < toDateTime(month, 'UTC')
             AND last_enrolled_at <= offboarded_at)                        AS enrolled
    FROM (SELECT month FROM {db}.kpi_months) AS left_side
    CROSS JOIN
    (
        SELECT partner_id, segment, region, enrolled_at, last_enrolled_at, offboarded_at FROM {db}.kpi_partners
    ) AS right_side
    WHERE enrolled_at > toDateTime(0, 'UTC') AND enrolled_at < toDateTime(addMonths(month, 1), 'UTC')
) AS left_side
ANY LEFT JOIN
(
    SELECT partner_id, month, sales, gross_sales_cents, returns_cents, deals_registered, deal_volume_cents,
           deals_won, deals_lost, trainings, certifications, marketing_activities, points_earned, points_bonus,
           points_spiff, points_clawed_back, points_redeemed, redemptions, points_expired, points_adjusted,
           points_held, points_released, points_forfeited, rebate_cents, rebate_forfeited_cents
    FROM {db}.kpi_partner_month FINAL
) AS right_side USING (month, partner_id);

-- Tier changes with the tiers' ranks (registered 0 .. platinum 3) and their direction.
CREATE VIEW IF NOT EXISTS {db}.kpi_tier_changes AS
SELECT
    change_id,
    partner_id,
    from_tier,
    to_tier,
    transform(from_tier, ['registered', 'silver', 'gold', 'platinum'], [0, 1, 2, 3], 0) AS from_rank,
    transform(to_tier, ['registered', 'silver', 'gold', 'platinum'], [0, 1, 2, 3], 0)   AS to_rank,
    if(to_rank > from_rank, 'upgrade', 'downgrade')                                     AS direction,
    reason,
    occurred_at,
    toDate(toStartOfMonth(occurred_at))                                                 AS month
FROM {db}.tier_changes FINAL;

-- Each partner's tier at the end of each month, from the month it first enrolled, and whether it
-- is enrolled then (`enrolled`: not offboarded since its last enrolment). Ties between changes at
-- the same second go to the higher tier.
CREATE VIEW IF NOT EXISTS {db}.kpi_tier_month_end AS
SELECT
    month,
    partner_id,
    segment,
    region,
    enrolled,
    if(tier = '', 'registered', tier) AS tier
FROM
(
    SELECT
        month, partner_id, segment, region,
        NOT (offboarded_at > toDateTime(0, 'UTC') AND offboarded_at < toDateTime(addMonths(month, 1), 'UTC')
             AND last_enrolled_at <= offboarded_at) AS enrolled
    FROM (SELECT month FROM {db}.kpi_months) AS left_side
    CROSS JOIN
    (
        SELECT partner_id, segment, region, enrolled_at, last_enrolled_at, offboarded_at FROM {db}.kpi_partners
    ) AS right_side
    WHERE enrolled_at > toDateTime(0, 'UTC') AND enrolled_at < toDateTime(addMonths(month, 1), 'UTC')
) AS left_side
ANY LEFT JOIN
(
    SELECT month, partner_id, argMax(to_tier, (occurred_at, to_rank)) AS tier
    FROM (SELECT month FROM {db}.kpi_months) AS left_side
    CROSS JOIN (SELECT partner_id, to_tier, to_rank, occurred_at FROM {db}.kpi_tier_changes) AS right_side
    WHERE occurred_at < toDateTime(addMonths(month, 1), 'UTC')
    GROUP BY month, partner_id
) AS right_side USING (month, partner_id);

-- Alerts in their latest state with the month they were raised in.
CREATE VIEW IF NOT EXISTS {db}.kpi_alerts AS
SELECT
    alert_id,
    alert_type,
    severity,
    partner_id,
    status,
    raised_at,
    toDate(toStartOfMonth(raised_at)) AS month,
    if(status = 'open', toDateTime(0, 'UTC'), occurred_at) AS resolved_at,
    held_points,
    status = 'confirmed' AS forfeited
FROM {db}.alerts FINAL;
