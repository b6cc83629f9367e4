"""The KPI rollup (`kpi_partner_month`, projections/sql/013): which partner-months a batch touched,
and the rebuild of those rows from the ledger and the events.

Why a rebuild and not a running sum. The sink delivers at least once, and ClickHouse 18.16 has no
insert deduplication, so anything that adds up inserted rows (a SummingMergeTree, a materialized
view) would count a redelivered batch twice. A rebuild reads its sources with FINAL, where copies
have collapsed, so running it again after a redelivery (or twice, or after a crash) writes the
same row again. The sources are partitioned by month and sorted by partner (migration 011), so a
rebuild reads only the parts of one month and the granules of the partners asked for: its cost
follows the batch, not the length of the log. Dashboards then read the rollup (one row per
partner and month) instead of scanning the ledger. docs/decisions.md weighs the alternatives.

Why the newest rebuild wins. The sink writes a batch's rows and then rebuilds their
partner-months, before it commits the batch's offsets; so every row, once committed, has been
followed by a rebuild that read it. When two rebuilds of one partner-month race (two sinks, or a
retry), the one that read last read everything both had written. Its `version`, the count of
source rows it read (events, refused events, ledger entries), is then the highest, and
ReplacingMergeTree(version) keeps it; equal versions mean the same rows were read.

What counts (docs/kpis.md has each definition):
- events the processor refused (a `rejections` row with the same partner and event id) count for
  nothing;
- a sale counts once per partner, order and month: a same-partner repeat of an order (a
  `duplicate_order` the processor ignored) adds nothing, as in the domain;
- ledger figures are the points account's entries by kind, the rebate account's rebates.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from projections.migrate import check_identifier

# Partner ids per rebuild statement (each one is an IN list in the query text).
PARTNERS_PER_REBUILD = 2_000

# Tables whose rows feed the rollup, and so mark a partner-month to rebuild.
SOURCE_TABLES = ("events", "ledger", "rejections")

COLUMNS = (
    "partner_id", "month", "version", "enrolled_at", "segment", "region", "offboarded_at",
    "sales", "gross_sales_cents", "returns_cents", "deals_registered", "deal_volume_cents", "deals_won",
    "deals_lost", "trainings", "certifications", "marketing_activities", "points_earned", "points_bonus",
    "points_spiff", "points_clawed_back", "points_redeemed", "redemptions", "points_expired",
    "points_adjusted", "points_held", "points_released", "points_forfeited", "rebate_cents",
    "rebate_forfeited_cents", "first_points_at",
)

Dirty = dict[date, set[str]]


def month_of(value: datetime) -> date:
    return date(value.year, value.month, 1)


def add_month(month: date, n: int = 1) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def touched(rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> Dirty:
    """The partner-months a batch's rows (per table, as the sink maps them) can change."""
    dirty: Dirty = defaultdict(set)
    for table in SOURCE_TABLES:
        for row in rows.get(table, ()):
            partner, occurred_at = row.get("partner_id"), row.get("occurred_at")
            if partner and partner != "*" and isinstance(occurred_at, datetime):
                dirty[month_of(occurred_at)].add(partner)
    return dict(dirty)


def merge(into: Dirty, more: Dirty) -> Dirty:
    for month, partners in more.items():
        into.setdefault(month, set()).update(partners)
    return into


def rebuild_sql(database: str) -> str:
    """One INSERT ... SELECT that rebuilds the rows of the partners `%(partners)s` for the month
    starting `%(start)s` (clickhouse-driver fills both in). Runs on 18.16 and on current ClickHouse."""
    db = check_identifier(database)
    window = ("occurred_at >= toDateTime(%(start)s, 'UTC') AND occurred_at < toDateTime(%(end)s, 'UTC') "
              "AND partner_id IN %(partners)s")
    return f"""
INSERT INTO {db}.kpi_partner_month ({", ".join(COLUMNS)})
SELECT
    partner_id, month, ev_rows + refused_rows + led_rows AS version,
    enrolled_at, segment, region, offboarded_at,
    sales, gross_sales_cents, returns_cents, deals_registered, deal_volume_cents, deals_won, deals_lost,
    trainings, certifications, marketing_activities,
    points_earned, points_bonus, points_spiff, points_clawed_back, points_redeemed, redemptions,
    points_expired, points_adjusted, points_held, points_released, points_forfeited,
    rebate_cents, rebate_forfeited_cents, first_points_at
FROM
(
    SELECT
        partner_id,
        month,
        sum(unit_rows)                                                              AS ev_rows,
        sum(unit_refused)                                                           AS refused_rows,
        minIf(first_at, kind = 'PartnerEnrolled' AND ok)                            AS enrolled_at,
        argMinIf(visitParamExtractString(first_payload, 'segment'), first_at,
                 kind = 'PartnerEnrolled' AND ok)                                   AS segment,
        argMinIf(visitParamExtractString(first_payload, 'region'), first_at,
                 kind = 'PartnerEnrolled' AND ok)                                   AS region,
        maxIf(first_at, kind = 'PartnerOffboarded' AND ok)                          AS offboarded_at,
        toUInt64(countIf(kind = 'SaleRecorded' AND ok))                             AS sales,
        sumIf(visitParamExtractInt(first_payload, 'amount_cents'), kind = 'SaleRecorded' AND ok)
                                                                                    AS gross_sales_cents,
        sumIf(visitParamExtractInt(first_payload, 'amount_cents'), kind = 'SaleReturned' AND ok)
                                                                                    AS returns_cents,
        toUInt64(countIf(kind = 'DealRegistered' AND ok))                           AS deals_registered,
        sumIf(visitParamExtractInt(first_payload, 'expected_amount_cents'), kind = 'DealRegistered' AND ok)
                                                                                    AS deal_volume_cents,
        toUInt64(countIf(kind = 'DealClosed' AND ok
                         AND visitParamExtractString(first_payload, 'outcome') = 'won'))   AS deals_won,
        toUInt64(countIf(kind = 'DealClosed' AND ok
                         AND visitParamExtractString(first_payload, 'outcome') = 'lost'))  AS deals_lost,
        toUInt64(countIf(kind = 'TrainingCompleted' AND ok))                        AS trainings,
        toUInt64(countIf(kind = 'TrainingCompleted' AND ok
                         AND visitParamExtractBool(first_payload, 'certification')))       AS certifications,
        toUInt64(countIf(kind = 'MarketingActivityCompleted' AND ok))               AS marketing_activities
    FROM
    (
        -- one row per unit: a sale's order (its first accepted claim), or any other event
        SELECT
            partner_id,
            toDate(toStartOfMonth(occurred_at))                                      AS month,
            event_type                                                               AS kind,
            if(event_type = 'SaleRecorded',
               concat('order:', visitParamExtractString(payload, 'order_id')),
               concat('event:', event_id))                                           AS unit,
            count()                                                                  AS unit_rows,
            countIf(refused)                                                         AS unit_refused,
            countIf(NOT refused) > 0                                                 AS ok,
            minIf(occurred_at, NOT refused)                                          AS first_at,
            argMinIf(payload, kafka_offset, NOT refused)                             AS first_payload
        FROM
        (
            SELECT partner_id, event_id, event_type, occurred_at, payload, kafka_offset,
                   (partner_id, event_id) IN
                       (SELECT partner_id, event_id FROM {db}.rejections WHERE partner_id IN %(partners)s)
                                                                                     AS refused
            FROM {db}.events FINAL
            WHERE {window}
        )
        GROUP BY partner_id, month, kind, unit
    )
    GROUP BY partner_id, month
) AS events_side
ALL FULL OUTER JOIN
(
    SELECT
        partner_id,
        toDate(toStartOfMonth(occurred_at))                                           AS month,
        count()                                                                       AS led_rows,
        sumIf(delta_available + delta_held, account = 'points' AND kind = 'earn')     AS points_earned,
        sumIf(delta_available + delta_held, account = 'points' AND kind = 'bonus')    AS points_bonus,
        sumIf(delta_available + delta_held, account = 'points' AND kind = 'spiff')    AS points_spiff,
        -sumIf(delta_available + delta_held, account = 'points' AND kind = 'clawback') AS points_clawed_back,
        -sumIf(delta_available + delta_held, account = 'points' AND kind = 'redeem')   AS points_redeemed,
        toUInt64(countIf(account = 'points' AND kind = 'redeem'))                     AS redemptions,
        -sumIf(delta_available + delta_held, account = 'points' AND kind = 'expire')   AS points_expired,
        sumIf(delta_available + delta_held, account = 'points' AND kind = 'adjust')   AS points_adjusted,
        sumIf(delta_held, account = 'points' AND kind = 'hold')                       AS points_held,
        sumIf(delta_available, account = 'points' AND kind = 'release')               AS points_released,
        -sumIf(delta_available + delta_held, account = 'points' AND kind = 'forfeit')  AS points_forfeited,
        sumIf(delta_available + delta_held, account = 'rebate' AND kind = 'rebate')   AS rebate_cents,
        -sumIf(delta_available + delta_held, account = 'rebate' AND kind = 'forfeit')  AS rebate_forfeited_cents,
        minIf(occurred_at, account = 'points' AND kind IN ('earn', 'bonus', 'spiff')
                           AND delta_available + delta_held > 0)                      AS first_points_at
    FROM {db}.ledger FINAL
    WHERE {window}
    GROUP BY partner_id, month
) AS ledger_side
USING (partner_id, month)
"""


def rebuild(execute: Any, database: str, dirty: Dirty) -> int:
    """Rebuild the rollup rows of `dirty` (month -> partner ids) with `execute(sql, params)`;
    returns the number of statements run. Safe to run any number of times."""
    sql = rebuild_sql(database)
    statements = 0
    for month in sorted(dirty):
        partners = sorted(dirty[month])
        for i in range(0, len(partners), PARTNERS_PER_REBUILD):
            execute(sql, {"start": month.isoformat() + " 00:00:00",
                          "end": add_month(month).isoformat() + " 00:00:00",
                          "partners": tuple(partners[i:i + PARTNERS_PER_REBUILD])})
            statements += 1
    return statements


def all_partner_months(execute: Any, database: str) -> Dirty:
    """Every partner-month the ledger and the events hold: what a full rebuild covers."""
    db = check_identifier(database)
    dirty: Dirty = defaultdict(set)
    for table in ("events", "ledger"):
        for partner, month in execute(
                f"SELECT DISTINCT partner_id, toDate(toStartOfMonth(occurred_at)) FROM {db}.{table} "
                f"WHERE partner_id != '*'"):
            dirty[month].add(partner)
    return dict(dirty)


def write_program_settings(execute: Any, database: str, rules_version: str, point_value_cents: int,
                           now: datetime) -> None:
    db = check_identifier(database)
    execute(f"INSERT INTO {db}.program_settings (rules_version, point_value_cents, written_at) VALUES",
            [(rules_version, point_value_cents, now)])
