"""A small worked program for the KPI tests, with its figures written out by hand.

Shared by tests/integration/test_kpis.py (ClickHouse 18.16) and tests/unit/test_projection_sql.py
(current ClickHouse, chdb), so both versions are held to the same numbers.
"""
from __future__ import annotations

import json


def e(event_id: str, event_type: str, partner: str, at: str, **fields) -> str:
    return json.dumps({"event_id": event_id, "event_type": event_type, "partner_id": partner,
                       "occurred_at": at, "source": "test", **fields})


def sale(event_id: str, partner: str, at: str, order: str, cents: int, category: str = "hardware",
         customer: str = "C1") -> str:
    return e(event_id, "SaleRecorded", partner, at, order_id=order, customer_id=customer, sku="SKU-1",
             category=category, quantity=1, amount_cents=cents, currency="USD")


def close(period: str, at: str) -> str:
    return e(f"close-{period}", "PeriodClosed", "*", at, period=period)


# The worked program (2026-Q1, and April). Points by SPEC section 4, all partners registered unless said:
#   P1 O1 $1,000 hardware: 1,000; its repeat (same order, new event id) earns nothing and the rollup
#      counts the order once; O2 $2,000 software: 4,000; return $500 of O2: clawback 1,000;
#      O5 $30,000 hardware: 30,000, then silver (trailing net $32,500 >= $25,000).
#   P2 certified training: 500; sale to customer P3 (a partner): self_dealing, 500 held, then
#      confirmed (forfeit 500); O6 $100,000: 100,000 capped to 49,500 (cap 50,000 with the 500 held),
#      earning_cap_reached, then gold ($100,500 net and one certification). Redeems 300.
#   P3 webinar: 150; O3 $6,000 services: 9,000.
#   P4 training: 200; offboarded on 03-10; its sale on 03-12 is refused (partner_inactive).
#   Rebates at the March close: P1 3% of $30,000 = $900; P2 3% of $100,500 = $3,015; P3 1% of $6,000 = $60.
WORKED = [
    e("p1-enrol", "PartnerEnrolled", "P1", "2026-01-05T00:00:00Z", name="One", segment="strategic", region="emea"),
    sale("p1-s1", "P1", "2026-01-06T00:00:00Z", "O1", 100_000),
    sale("p1-s1-again", "P1", "2026-01-07T00:00:00Z", "O1", 100_000),
    e("p2-enrol", "PartnerEnrolled", "P2", "2026-01-10T00:00:00Z", name="Two", segment="long_tail", region="amer"),
    e("p2-t1", "TrainingCompleted", "P2", "2026-01-12T00:00:00Z", course_id="c1", certification=True),
    e("p2-d1", "DealRegistered", "P2", "2026-01-15T00:00:00Z", deal_id="D1", customer_id="C9",
      expected_amount_cents=500_000),
    close("2026-01", "2026-01-31T23:59:59Z"),
    e("p3-enrol", "PartnerEnrolled", "P3", "2026-02-01T00:00:00Z", name="Three", segment="strategic", region="apac"),
    e("p3-m1", "MarketingActivityCompleted", "P3", "2026-02-02T00:00:00Z", activity_id="A1", activity_type="webinar"),
    sale("p1-s2", "P1", "2026-02-03T00:00:00Z", "O2", 200_000, category="software"),
    e("p1-r2", "SaleReturned", "P1", "2026-02-10T00:00:00Z", order_id="O2", amount_cents=50_000),
    e("p4-enrol", "PartnerEnrolled", "P4", "2026-02-15T00:00:00Z", name="Four", segment="long_tail", region="emea"),
    e("p4-t2", "TrainingCompleted", "P4", "2026-02-16T00:00:00Z", course_id="c2", certification=False),
    e("p2-d1-won", "DealClosed", "P2", "2026-02-20T00:00:00Z", deal_id="D1", outcome="won"),
    e("p2-redeem", "RedemptionRequested", "P2", "2026-02-21T00:00:00Z", redemption_id="R1", reward="mdf",
      points=300),
    close("2026-02", "2026-02-28T23:59:59Z"),
    sale("p2-self", "P2", "2026-03-02T00:00:00Z", "O7", 50_000, customer="P3"),
    e("p2-confirm", "AlertResolved", "P2", "2026-03-03T00:00:00Z", alert_id="self_dealing:P2:p2-self",
      decision="confirmed", analyst="ana"),
    sale("p3-s3", "P3", "2026-03-05T00:00:00Z", "O3", 600_000, category="services"),
    e("p4-off", "PartnerOffboarded", "P4", "2026-03-10T00:00:00Z", reason="contract ended"),
    sale("p4-s4", "P4", "2026-03-12T00:00:00Z", "O4", 100_000),
    e("p1-d2", "DealRegistered", "P1", "2026-03-15T00:00:00Z", deal_id="D2", customer_id="C8",
      expected_amount_cents=200_000),
    e("p1-d2-lost", "DealClosed", "P1", "2026-03-20T00:00:00Z", deal_id="D2", outcome="lost"),
    sale("p1-s5", "P1", "2026-03-25T00:00:00Z", "O5", 3_000_000),
    sale("p2-s6", "P2", "2026-03-28T00:00:00Z", "O6", 10_000_000),
    close("2026-03", "2026-03-31T23:59:59Z"),
    e("p2-t3", "TrainingCompleted", "P2", "2026-04-02T00:00:00Z", course_id="c3", certification=False),
]


# (period, family, key) -> the figure, from the comments above.
EXPECTED: dict[tuple[str, str, str], object] = {
    # everyone was enrolled and active in Q1
    ("2026-Q1", "participation", "enrolled_partners"): 4,
    ("2026-Q1", "participation", "active_partners"): 4,
    ("2026-Q1", "participation", "participation_rate"): 1.0,
    # P4 is enrolled in March (offboarded on the 10th) but its only March event was refused
    ("2026-03", "participation", "enrolled_partners"): 4,
    ("2026-03", "participation", "active_partners"): 3,
    ("2026-03", "participation", "participation_rate"): 0.75,
    ("2026-01", "participation", "enrolled_partners"): 2,
    # awarded: P1 1,000 + 4,000 + 30,000; P2 500 + 500 + 49,500; P3 150 + 9,000; P4 200
    ("2026-Q1", "redemption", "points_awarded"): 94_850,
    ("2026-Q1", "redemption", "points_redeemed"): 300,
    ("2026-Q1", "redemption", "redemption_rate"): 0.0032,          # 300 / 94,850
    ("2026-Q1", "redemption", "partners_redeeming"): 1,
    ("2026-Q1", "redemption", "share_of_partners_redeeming"): 0.25,
    ("2026-Q1", "deals", "deals_registered"): 2,
    ("2026-Q1", "deals", "deal_volume_cents"): 700_000,
    ("2026-Q1", "deals", "win_rate"): 0.5,
    ("2026-Q1", "completion", "trainings"): 2,
    ("2026-Q1", "completion", "certifications"): 1,
    ("2026-Q1", "completion", "marketing_activities"): 1,
    ("2026-Q1", "completion", "trainings_per_active_partner"): 0.5,
    # P4 is offboarded at the end of Q1: not in the distribution
    ("2026-Q1", "tiers", "at_end"): {"registered": 1, "silver": 1, "gold": 1, "platinum": 0},
    ("2026-Q1", "tiers", "upgrades"): 2,
    ("2026-Q1", "tiers", "downgrades"): 0,
    ("2026-04", "tiers", "at_start"): {"registered": 1, "silver": 1, "gold": 1, "platinum": 0},
    # P2 was gold at the end of March, trained in April and is still gold
    ("2026-04", "retention", "top_tier_at_start"): 1,
    ("2026-04", "retention", "retained"): 1,
    ("2026-04", "retention", "retention_rate"): 1.0,
    # P1 $1,000 + $1,500 + $30,000; P2 $500 + $100,000; P3 $6,000 (P1's repeat of O1 counts once)
    ("2026-Q1", "growth", "net_sales_cents"): 13_900_000,
    ("2026-Q1", "growth", "returns_cents"): 50_000,
    ("2026-Q1", "growth", "growth_vs_previous"): None,
    ("2026-03", "growth", "net_sales_cents"): 13_650_000,
    ("2026-03", "growth", "previous_net_sales_cents"): 150_000,
    ("2026-03", "growth", "growth_vs_previous"): 90.0,
    # points: 94,850 awarded - 1,000 clawed back - 500 forfeited; rebates $900 + $3,015 + $60
    ("2026-Q1", "cost", "points_cost_cents"): 93_350,
    ("2026-Q1", "cost", "rebate_cents"): 397_500,
    ("2026-Q1", "cost", "program_cost_cents"): 490_850,
    ("2026-Q1", "cost", "incremental_net_sales_cents"): 13_900_000,
    ("2026-Q1", "cost", "cost_per_incremental_dollar"): 0.0353,   # 490,850 / 13,900,000
    # baselines from the 12 months before: P1 $32,500, P2 $100,500, P3 $6,000 (Jan-Mar), times
    # 1/12 for April (floor: 270,833 + 837,500 + 50,000) and 3/12 for Q2; nobody sold in April
    ("2026-04", "cost", "baseline_net_sales_cents"): 1_158_333,
    ("2026-04", "cost", "incremental_net_sales_cents"): 0,
    ("2026-Q2", "cost", "baseline_net_sales_cents"): 3_475_000,
    # days to first points: P1 1, P2 2, P3 1, P4 1
    ("2026-Q1", "time_to_first_value", "partners_with_points"): 4,
    ("2026-Q1", "time_to_first_value", "median_days"): 1.0,
    ("2026-Q1", "time_to_first_value", "p90_days"): 2.0,
    ("2026-Q1", "anomalies", "raised"): 3,
    ("2026-Q1", "anomalies", "held_points_forfeited"): 500,
    ("2026-Q1", "anomalies", "points_forfeited"): 500,
}
