"""The default program's rules (SPEC section 4), one test per rule, with the worked numbers written out.

Every replay goes through ``builders.run``, which also checks the ledger invariants (balances = sum of
deltas per account, seq 1..n, the sha256 hash chain, the head).
"""

import pytest

from tests.unit.builders import (
    OMIT,
    adjustment,
    alert,
    alert_ids,
    deal,
    deal_closed,
    deltas,
    enrolled,
    entries,
    marketing,
    offboarded,
    period_closed,
    points,
    rebate,
    redemption,
    rejections,
    returned,
    run,
    sale,
    tier,
    training,
)


def earn_deltas(r, source):
    return [e["delta_available"] for e in entries(r, kind="earn", source=source)]


# ================================================================================== sale points, categories

@pytest.mark.parametrize(
    ("category", "amount_cents", "expected"),
    [
        ("hardware", 100_099, 1000),    # 100099 // 100 = 1000; 1000 * 100 * 100 // 10000 = 1000
        ("software", 100_099, 2000),    # 1000 * 200 * 100 // 10000 = 2000
        ("services", 100_099, 1500),    # 1000 * 150 * 100 // 10000 = 1500
        ("devices", 100_099, 1000),     # 1000 * 100 * 100 // 10000 = 1000 (September: outside the SPIFF)
        ("consulting", 100_099, 1000),  # unlisted category earns 100%: 1000 * 100 * 100 // 10000 = 1000
        ("services", 99_999, 1498),     # 999 * 150 * 100 // 10000 = 1498.5 -> floor 1498
        ("software", 1_234_599, 24690),  # 12345 * 200 * 100 // 10000 = 24690 (the 99 cents are dropped)
    ],
)
def test_sale_points_per_category_at_registered_tier(category, amount_cents, expected):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=amount_cents, category=category, quantity=3,
             at="2026-09-15T12:00:00Z", event_id="s1"),
    ])
    assert points(r, "P1") == (expected, 0)
    assert earn_deltas(r, "s1") == [expected]
    assert tier(r, "P1") == "registered"
    assert r["alerts"] == [] and r["rejections"] == []


def test_sale_below_one_dollar_earns_nothing_and_writes_no_entry():
    # 99 // 100 = 0 -> 0 points.
    # AMBIGUOUS: SPEC 9 allows a zero-delta earn entry only for a sale cut to 0 by the cap
    # ("no other zero-delta entry is written"), so a sale worth 0 points by the formula writes no entry.
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=99, category="software", at="2026-03-10T12:00:00Z", event_id="s1"),
    ])
    assert points(r, "P1") == (0, 0)
    assert entries(r, "P1") == []
    assert r["events_applied"] == 2


# ================================================================================== tier multipliers

def test_silver_multiplier_and_the_crossing_sale_is_rated_with_the_previous_tier():
    lines = [
        enrolled("P1"),
        # net sales 0 -> $25,000.00, rated at registered: 25000 * 100 * 100 // 10000 = 25000; then silver
        sale("P1", "O1", amount_cents=2_500_000, category="hardware", at="2026-03-10T12:00:00Z",
             event_id="s1"),
        # silver (next month, away from the cap): 15000 * 200 * 110 // 10000 = 33000
        sale("P1", "O2", amount_cents=1_500_000, category="software", at="2026-04-10T12:00:00Z",
             event_id="s2"),
        # silver, odd cents: 123456 // 100 = 1234; 1234 * 150 * 110 // 10000 = 2036.1 -> 2036
        sale("P1", "O3", amount_cents=123_456, category="services", at="2026-04-11T12:00:00Z", event_id="s3"),
    ]
    assert tier(run(lines[:1]), "P1") == "registered"
    assert tier(run(lines[:2]), "P1") == "silver"
    r = run(lines)
    assert deltas(r, "s1") == (25000, 0)
    assert deltas(r, "s2") == (33000, 0)
    assert deltas(r, "s3") == (2036, 0)
    assert points(r, "P1") == (60036, 0)  # 25000 + 33000 + 2036
    assert tier(r, "P1") == "silver"


def test_silver_threshold_is_inclusive_at_exactly_25000_dollars():
    lines = [
        enrolled("P1"),
        # $24,999.99: 24999 * 100 * 100 // 10000 = 24999; still registered
        sale("P1", "O1", amount_cents=2_499_999, at="2026-03-10T12:00:00Z", event_id="s1"),
        # one more cent: 0 points, net sales exactly $25,000.00 -> silver
        sale("P1", "O2", amount_cents=1, at="2026-03-11T12:00:00Z", event_id="s2"),
        # silver: 1000 * 200 * 110 // 10000 = 2200
        sale("P1", "O3", amount_cents=100_000, category="software", at="2026-03-12T12:00:00Z", event_id="s3"),
    ]
    assert tier(run(lines[:2]), "P1") == "registered"
    assert tier(run(lines[:3]), "P1") == "silver"
    r = run(lines)
    assert deltas(r, "s3") == (2200, 0)
    assert points(r, "P1") == (27199, 0)  # 24999 + 0 + 2200


def test_gold_multiplier_with_one_certification_and_upgrade_straight_to_the_highest_tier():
    lines = [
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-01-05T12:00:00Z"),  # 500
        # rated at registered: 100000 * 100 * 100 // 10000 = 100000 -> capped to 50000 (cap alert);
        # then net $100,000 + 1 certification -> gold directly (not silver)
        sale("P1", "O1", amount_cents=10_000_000, at="2026-01-10T12:00:00Z", event_id="s1"),
        # gold: 10000 * 200 * 125 // 10000 = 25000
        sale("P1", "O2", amount_cents=1_000_000, category="software", at="2026-02-10T12:00:00Z",
             event_id="s2"),
    ]
    assert tier(run(lines[:3]), "P1") == "gold"
    r = run(lines)
    assert deltas(r, "s1") == (50000, 0)
    assert deltas(r, "s2") == (25000, 0)
    assert points(r, "P1") == (75500, 0)  # 500 + 50000 + 25000
    assert tier(r, "P1") == "gold"


def test_gold_needs_a_certification_net_sales_alone_give_silver():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=False, at="2026-01-05T12:00:00Z"),
        sale("P1", "O1", amount_cents=10_000_000, at="2026-01-10T12:00:00Z"),
    ])
    assert tier(r, "P1") == "silver"


def test_platinum_multiplier_with_two_certifications():
    lines = [
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-01-05T12:00:00Z"),  # 500
        training("P1", "T2", certification=True, at="2026-01-06T12:00:00Z"),  # 500
        # registered: 500000 * 100 * 100 // 10000 = 500000 -> capped to 50000; then platinum
        sale("P1", "O1", amount_cents=50_000_000, at="2026-01-10T12:00:00Z", event_id="s1"),
        # platinum: 10000 * 200 * 150 // 10000 = 30000
        sale("P1", "O2", amount_cents=1_000_000, category="software", at="2026-02-10T12:00:00Z",
             event_id="s2"),
    ]
    r = run(lines)
    assert tier(run(lines[:4]), "P1") == "platinum"
    assert deltas(r, "s2") == (30000, 0)
    assert points(r, "P1") == (81000, 0)  # 500 + 500 + 50000 + 30000


def test_platinum_needs_two_distinct_certified_courses():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-01-05T12:00:00Z"),
        training("P1", "T1", certification=True, at="2026-01-06T12:00:00Z"),  # same course: still one
        sale("P1", "O1", amount_cents=50_000_000, at="2026-01-10T12:00:00Z"),
    ])
    assert tier(r, "P1") == "gold"


def test_later_certified_completion_of_a_done_course_earns_nothing_but_counts_for_tiers():
    lines = [
        enrolled("P1"),
        training("P1", "T1", certification=False, at="2026-01-05T12:00:00Z", event_id="t1"),  # 200
        sale("P1", "O1", amount_cents=10_000_000, at="2026-01-10T12:00:00Z"),  # 50000 after the cap; silver
        training("P1", "T1", certification=True, at="2026-02-01T12:00:00Z", event_id="t2"),  # 0; now gold
        # gold: 10000 * 200 * 125 // 10000 = 25000
        sale("P1", "O2", amount_cents=1_000_000, category="software", at="2026-02-10T12:00:00Z",
             event_id="s2"),
    ]
    assert tier(run(lines[:3]), "P1") == "silver"
    assert tier(run(lines[:4]), "P1") == "gold"
    r = run(lines)
    assert entries(r, "P1", source="t2") == []
    assert deltas(r, "s2") == (25000, 0)
    assert points(r, "P1") == (75200, 0)  # 200 + 50000 + 0 + 25000


@pytest.mark.parametrize(
    ("second_sale_at", "expected_tier"),
    [
        ("2026-02-28T12:00:00Z", "silver"),      # window 2025-03..2026-02 holds both: 20,000 + 10,000
        ("2026-03-01T12:00:00Z", "registered"),  # window 2025-04..2026-03 has only 10,000
    ],
)
def test_tier_window_is_the_trailing_12_calendar_months(second_sale_at, expected_tier):
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=2_000_000, at="2025-03-15T12:00:00Z"),
        sale("P1", "O2", amount_cents=1_000_000, at=second_sale_at, event_id="s2"),
    ])
    assert tier(r, "P1") == expected_tier
    assert deltas(r, "s2") == (10000, 0)  # rated at registered either way: 10000 * 100 * 100 // 10000


def test_a_return_does_not_downgrade_at_once():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=3_000_000, at="2026-03-10T12:00:00Z"),  # 30000; silver
        returned("P1", "O1", amount_cents=3_000_000, at="2026-03-20T12:00:00Z"),  # net 0
    ])
    assert tier(r, "P1") == "silver"
    assert points(r, "P1") == (0, 0)  # 30000 - floor(30000 * 3000000 / 3000000)


# ================================================================================== tier reviews

def test_downgrade_after_two_consecutive_failed_quarter_end_reviews_only():
    lines = [
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=3_000_000, at="2025-01-15T12:00:00Z"),  # 30000; silver
        period_closed("2026-03"),  # review 2025-04..2026-03: net 0 -> missed 1
        # AMBIGUOUS: closes of non-quarter months neither count as reviews nor reset the count
        period_closed("2026-04"),  # not a quarter end: no review
        period_closed("2026-05"),  # not a quarter end: no review
        period_closed("2026-06"),  # review 2025-07..2026-06: net 0 -> missed 2 -> drops to registered
    ]
    assert tier(run(lines[:2]), "P1") == "silver"
    assert tier(run(lines[:3]), "P1") == "silver"
    assert tier(run(lines[:5]), "P1") == "silver"
    assert tier(run(lines), "P1") == "registered"


def test_meeting_the_tier_at_a_review_resets_the_missed_count():
    lines = [
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=3_000_000, at="2025-01-15T12:00:00Z"),  # silver
        period_closed("2026-03"),  # window 2025-04..2026-03: 0 -> missed 1
        # rated silver: 25000 * 100 * 110 // 10000 = 27500; window total 25,000 (already silver, no upgrade)
        sale("P1", "O2", amount_cents=2_500_000, at="2026-05-10T12:00:00Z"),
        period_closed("2026-06"),  # window 2025-07..2026-06: 25,000 -> met, count reset to 0
        returned("P1", "O2", amount_cents=2_500_000, at="2026-07-10T12:00:00Z"),  # net of the window 0
        period_closed("2026-09"),  # window 2025-10..2026-09: 0 -> missed 1 (not 2: the June review reset it)
        period_closed("2026-12"),  # window 2026-01..2026-12: 0 -> missed 2 -> registered
    ]
    assert tier(run(lines[:7]), "P1") == "silver"
    assert tier(run(lines), "P1") == "registered"


def test_downgrade_drops_to_the_highest_tier_still_met():
    lines = [
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        training("P1", "T1", certification=True, at="2025-01-05T12:00:00Z"),
        sale("P1", "O1", amount_cents=10_000_000, at="2025-01-10T12:00:00Z"),  # gold
        # gold: 30000 * 100 * 125 // 10000 = 37500
        sale("P1", "O2", amount_cents=3_000_000, at="2026-02-10T12:00:00Z", event_id="s2"),
        period_closed("2026-03"),  # 2025-04..2026-03: $30,000, 0 certifications -> not gold: missed 1
        period_closed("2026-06"),  # 2025-07..2026-06: same -> missed 2 -> silver (met), not registered
    ]
    r = run(lines)
    assert deltas(r, "s2") == (37500, 0)
    assert tier(run(lines[:5]), "P1") == "gold"
    assert tier(r, "P1") == "silver"


def test_a_review_that_finds_a_higher_tier_upgrades():
    lines = [
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_000_000, at="2026-03-05T12:00:00Z"),  # 20000; net 20,000
        # late sale: the upgrade looks at 2025-02..2026-01 (its own month) -> 10,000 -> stays registered
        sale("P1", "O2", amount_cents=1_000_000, at="2026-01-20T12:00:00Z", event_id="s2"),
        # review 2025-04..2026-03: 20,000 + 10,000 = 30,000 -> silver
        period_closed("2026-03", event_id="c3"),
    ]
    assert tier(run(lines[:3]), "P1") == "registered"
    r = run(lines)
    assert deltas(r, "s2") == (10000, 0)
    assert tier(r, "P1") == "silver"
    # March net sales $20,000 -> 3%: 2000000 * 3 // 100 = 60000 cents (O2 belongs to January)
    assert rebate(r, "P1") == (60000, 0)


# ================================================================================== deal bonus

def test_deal_bonus_for_an_open_deal_registered_earlier():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        # 10000 * 100 * 100 // 10000 = 10000; bonus 10000 * 10 // 100 = 1000
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-02-10T12:00:00Z", event_id="s1"),
    ])
    assert deltas(r, "s1") == (11000, 0)
    assert points(r, "P1") == (11000, 0)


def test_deal_bonus_is_floored():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        # 1234 * 200 * 100 // 10000 = 2468; bonus 2468 * 10 // 100 = 246.8 -> 246
        sale("P1", "O1", amount_cents=123_400, category="software", deal_id="D1", at="2026-02-10T12:00:00Z"),
    ])
    assert points(r, "P1") == (2714, 0)  # 2468 + 246


def test_deal_bonus_for_a_won_deal():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        deal_closed("P1", "D1", outcome="won", at="2026-02-05T12:00:00Z"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-02-10T12:00:00Z"),  # 10000 + 1000
    ])
    assert points(r, "P1") == (11000, 0)


def test_no_deal_bonus_for_a_lost_deal():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        deal_closed("P1", "D1", outcome="lost", at="2026-02-05T12:00:00Z"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-02-10T12:00:00Z"),  # 10000, no bonus
    ])
    assert points(r, "P1") == (10000, 0)
    assert r["rejections"] == []


def test_a_later_loss_takes_no_bonus_back():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-02-10T12:00:00Z"),  # 10000 + 1000
        deal_closed("P1", "D1", outcome="lost", at="2026-02-20T12:00:00Z"),
    ])
    assert points(r, "P1") == (11000, 0)


def test_no_deal_bonus_for_a_deal_registered_later_in_the_log():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-02-10T12:00:00Z"),  # 10000, no bonus
        deal("P1", "D1", customer_id="ACME", at="2026-02-11T12:00:00Z"),
    ])
    assert points(r, "P1") == (10000, 0)
    assert r["rejections"] == []


def test_no_deal_bonus_for_another_partners_deal_or_an_unknown_deal():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P2", "D2", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D2", at="2026-02-10T12:00:00Z"),  # 10000
        sale("P1", "O2", amount_cents=1_000_000, deal_id="NOPE", at="2026-02-11T12:00:00Z"),  # 10000
    ])
    assert points(r, "P1") == (20000, 0)
    assert r["rejections"] == []
    assert r["events_applied"] == 5


def test_deal_bonus_counts_against_the_monthly_cap():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-03-01T12:00:00Z"),
        # 20000 * 200 * 100 // 10000 = 40000
        sale("P1", "O1", amount_cents=2_000_000, category="software", at="2026-03-02T12:00:00Z"),
        # 4900 * 200 * 100 // 10000 = 9800; bonus 9800 * 10 // 100 = 980; 9800 + 980 = 10780 > room 10000
        sale("P1", "O2", amount_cents=490_000, category="software", deal_id="D1", at="2026-03-03T12:00:00Z",
             event_id="s2"),
    ])
    assert points(r, "P1") == (50000, 0)  # 40000 + 10000
    assert deltas(r, "s2") == (10000, 0)
    assert alert_ids(r) == ["earning_cap_reached:P1:s2"]


# ================================================================================== monthly cap

def test_monthly_cap_partial_award_zero_entry_single_alert_and_new_month():
    r = run([
        enrolled("P1"),
        # 20000 * 200 * 100 // 10000 = 40000 (month total 40000)
        sale("P1", "O1", amount_cents=2_000_000, category="software", at="2026-03-02T10:00:00Z",
             event_id="s1"),
        # registered: 6000 * 200 * 100 // 10000 = 12000; room 50000 - 40000 = 10000 -> 10000; alert
        # (net sales now $26,000 -> silver)
        sale("P1", "O2", amount_cents=600_000, category="software", at="2026-03-03T10:00:00Z", event_id="s2"),
        # silver: 1000 * 200 * 110 // 10000 = 2200 -> room 0 -> 0, still an earn entry with delta 0
        sale("P1", "O3", amount_cents=100_000, category="software", at="2026-03-04T10:00:00Z", event_id="s3"),
        # April: a new month, 2200 in full
        sale("P1", "O4", amount_cents=100_000, category="software", at="2026-04-01T00:00:00Z", event_id="s4"),
        # silver: 24000 * 200 * 110 // 10000 = 52800; room 50000 - 2200 = 47800 -> 47800; April's alert
        sale("P1", "O5", amount_cents=2_400_000, category="software", at="2026-04-02T10:00:00Z",
             event_id="s5"),
    ])
    assert earn_deltas(r, "s1") == [40000]
    assert earn_deltas(r, "s2") == [10000]
    assert earn_deltas(r, "s3") == [0]
    assert earn_deltas(r, "s4") == [2200]
    assert earn_deltas(r, "s5") == [47800]
    assert points(r, "P1") == (100000, 0)  # 40000 + 10000 + 0 + 2200 + 47800
    assert alert_ids(r) == ["earning_cap_reached:P1:s2", "earning_cap_reached:P1:s5"]
    a = alert(r, "earning_cap_reached:P1:s2")
    assert (a["alert_type"], a["severity"], a["partner_id"], a["trigger_event_id"]) == (
        "earning_cap_reached", "low", "P1", "s2")


def test_cap_alert_is_raised_when_the_total_reaches_exactly_50000():
    # AMBIGUOUS: "first reaches 50,000" read as total >= 50,000, so landing exactly on the cap raises it.
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_000_000, category="software", at="2026-03-02T10:00:00Z"),  # 40000
        # 5000 * 200 * 100 // 10000 = 10000 -> total exactly 50000, nothing cut
        sale("P1", "O2", amount_cents=500_000, category="software", at="2026-03-03T10:00:00Z", event_id="s2"),
    ])
    assert points(r, "P1") == (50000, 0)
    assert alert_ids(r) == ["earning_cap_reached:P1:s2"]


def test_cap_is_per_partner():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=3_000_000, category="software", at="2026-03-02T10:00:00Z",
             event_id="s1"),  # 60000 -> 50000
        sale("P2", "O2", amount_cents=1_000_000, category="software", at="2026-03-03T10:00:00Z"),  # 20000
    ])
    assert points(r, "P1") == (50000, 0)
    assert points(r, "P2") == (20000, 0)
    assert alert_ids(r) == ["earning_cap_reached:P1:s1"]


def test_cap_month_is_the_month_of_occurred_at_of_a_late_sale():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_500_000, category="software", at="2026-03-10T10:00:00Z",
             event_id="s1"),  # 50000: March full
        sale("P1", "O2", amount_cents=100_000, category="hardware", at="2026-04-02T10:00:00Z",
             event_id="s2"),  # silver: 1000 * 100 * 110 // 10000 = 1100 (April)
        sale("P1", "O3", amount_cents=100_000, category="hardware", at="2026-03-31T10:00:00Z",
             event_id="s3"),  # late, March: 1100 -> 0
    ])
    assert earn_deltas(r, "s2") == [1100]
    assert earn_deltas(r, "s3") == [0]
    assert points(r, "P1") == (51100, 0)


def test_held_points_use_cap_room():
    r = run([
        enrolled("P1"),
        # self-dealing (customer is the seller's own id): 40000 held, still uses cap room
        sale("P1", "O1", amount_cents=2_000_000, category="software", customer_id="P1",
             at="2026-03-02T10:00:00Z", event_id="s1"),
        # 12000 -> room 10000
        sale("P1", "O2", amount_cents=600_000, category="software", at="2026-03-03T10:00:00Z", event_id="s2"),
    ])
    assert points(r, "P1") == (10000, 40000)
    assert "earning_cap_reached:P1:s2" in alert_ids(r)


def test_clawbacks_do_not_give_cap_room_back():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_000_000, category="software", at="2026-03-02T10:00:00Z"),  # 40000
        sale("P1", "O2", amount_cents=600_000, category="software", at="2026-03-03T10:00:00Z"),  # 10000 (cap)
        # clawback floor(40000 * 2000000 / 2000000) = 40000
        returned("P1", "O1", amount_cents=2_000_000, at="2026-03-04T10:00:00Z"),
        # net sales back to $6,000 but the tier stays silver; 1000 * 200 * 110 // 10000 = 2200 -> room still 0
        sale("P1", "O3", amount_cents=100_000, category="software", at="2026-03-05T10:00:00Z", event_id="s3"),
    ])
    assert earn_deltas(r, "s3") == [0]
    assert points(r, "P1") == (10000, 0)  # 40000 + 10000 - 40000 + 0


# ================================================================================== SPIFF q4-devices

@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-09-30T23:59:59Z", 1000),  # before the window: 1000 * 100 * 100 // 10000 = 1000
        ("2026-10-01T00:00:00Z", 1050),  # first instant: 1000 + 5 units * 10 = 1050
        ("2026-12-31T23:59:59Z", 1050),  # last second, inclusive: 1000 + 50
        ("2027-01-01T00:00:00Z", 1000),  # after the window
    ],
)
def test_spiff_window_edges(at, expected):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="devices", quantity=5, at=at),
    ])
    assert points(r, "P1") == (expected, 0)


def test_spiff_only_for_devices():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="hardware", quantity=5, at="2026-10-05T12:00:00Z"),
    ])
    assert points(r, "P1") == (1000, 0)  # no 10 points per unit


def test_spiff_units_are_not_tier_multiplied():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_500_000, at="2026-09-10T12:00:00Z"),  # 25000; silver
        # silver: 1000 * 100 * 110 // 10000 = 1100; SPIFF 10 units * 10 = 100 (not x110%)
        sale("P1", "O2", amount_cents=100_000, category="devices", quantity=10, at="2026-10-05T12:00:00Z",
             event_id="s2"),
    ])
    assert deltas(r, "s2") == (1200, 0)
    assert points(r, "P1") == (26200, 0)


def test_spiff_units_are_not_capped():
    r = run([
        enrolled("P1"),
        # 25000 * 200 * 100 // 10000 = 50000: October's cap reached; silver
        sale("P1", "O1", amount_cents=2_500_000, category="software", at="2026-10-02T12:00:00Z"),
        # silver 1100 -> 0 by the cap (earn entry with delta 0); SPIFF 10 * 10 = 100 in full
        sale("P1", "O2", amount_cents=100_000, category="devices", quantity=10, at="2026-10-03T12:00:00Z",
             event_id="s2"),
    ])
    # AMBIGUOUS: the SPIFF units are their own (spiff) entry, so the capped sale's earn entry shows delta 0
    assert earn_deltas(r, "s2") == [0]
    assert deltas(r, "s2") == (100, 0)
    assert points(r, "P1") == (50100, 0)


def test_spiff_threshold_bonus_once_when_units_reach_100():
    r = run([
        enrolled("P1"),
        # 600 * 100 * 100 // 10000 = 600; 60 units * 10 = 600 -> 1200 (60 units)
        sale("P1", "O1", amount_cents=60_000, category="devices", quantity=60, at="2026-10-05T12:00:00Z"),
        # 400 + 40 * 10 = 800; units reach 100 -> bonus 5000 -> 5800
        sale("P1", "O2", amount_cents=40_000, category="devices", quantity=40, at="2026-10-06T12:00:00Z",
             event_id="s2"),
        # 1000 + 100 * 10 = 2000; no second bonus
        sale("P1", "O3", amount_cents=100_000, category="devices", quantity=100, at="2026-10-07T12:00:00Z",
             event_id="s3"),
    ])
    assert deltas(r, "s2") == (5800, 0)
    assert deltas(r, "s3") == (2000, 0)
    assert points(r, "P1") == (9000, 0)  # 1200 + 5800 + 2000


def test_spiff_units_outside_the_window_do_not_count_to_the_threshold():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=90_000, category="devices", quantity=90,
             at="2026-09-30T12:00:00Z"),  # 900
        # 100 + 10 * 10 = 200; window units 10 -> no bonus
        sale("P1", "O2", amount_cents=10_000, category="devices", quantity=10, at="2026-10-05T12:00:00Z"),
    ])
    assert points(r, "P1") == (1100, 0)


def test_spiff_units_of_held_sales_count_and_the_threshold_bonus_is_never_held():
    r = run([
        enrolled("P1"),
        # self-dealing: the order's points 1000 + 100 * 10 = 2000 are held; the 5000 bonus goes to available
        sale("P1", "O1", amount_cents=100_000, category="devices", quantity=100, customer_id="P1",
             at="2026-10-05T12:00:00Z", event_id="s1"),
    ])
    assert points(r, "P1") == (5000, 2000)
    assert alert_ids(r) == ["self_dealing:P1:s1"]


def test_returns_do_not_reduce_spiff_units_and_never_claw_back_the_threshold_bonus():
    r = run([
        enrolled("P1"),
        # 1000 + 100 * 10 + 5000 = 7000
        sale("P1", "O1", amount_cents=100_000, category="devices", quantity=100, at="2026-10-05T12:00:00Z"),
        # clawback floor(2000 * 100000 / 100000) = 2000 (sale + SPIFF units, not the 5000 bonus)
        returned("P1", "O1", amount_cents=100_000, at="2026-10-10T12:00:00Z", event_id="r1"),
        # units are now 101, the bonus was paid once: 10 + 1 * 10 = 20
        sale("P1", "O2", amount_cents=1_000, category="devices", quantity=1, at="2026-10-12T12:00:00Z"),
    ])
    assert deltas(r, "r1") == (-2000, 0)
    assert points(r, "P1") == (5020, 0)  # 7000 - 2000 + 20


# ================================================================================== training and marketing

def test_training_200_or_500_once_per_course():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=False, at="2026-03-01T12:00:00Z", event_id="t1"),  # 200
        training("P1", "T2", certification=True, at="2026-03-02T12:00:00Z", event_id="t2"),  # 500
        training("P1", "T1", certification=False, at="2026-03-03T12:00:00Z", event_id="t3"),  # repeat: 0
        training("P1", "T2", certification=True, at="2026-03-04T12:00:00Z", event_id="t4"),  # repeat: 0
    ])
    assert deltas(r, "t1") == (200, 0)
    assert deltas(r, "t2") == (500, 0)
    assert entries(r, "P1", source="t3") == [] and entries(r, "P1", source="t4") == []
    assert points(r, "P1") == (700, 0)
    assert r["alerts"] == [] and r["rejections"] == []
    assert r["events_applied"] == 5


@pytest.mark.parametrize(
    ("activity_type", "expected"),
    [("webinar", 150), ("co_marketing", 300), ("customer_reference", 500), ("case_study", 750)],
)
def test_marketing_points_per_activity_type(activity_type, expected):
    r = run([
        enrolled("P1"),
        marketing("P1", "A1", activity_type=activity_type, at="2026-03-01T12:00:00Z"),
    ])
    assert points(r, "P1") == (expected, 0)


def test_marketing_once_per_activity_id():
    r = run([
        enrolled("P1"),
        marketing("P1", "A1", activity_type="webinar", at="2026-03-01T12:00:00Z"),  # 150
        marketing("P1", "A1", activity_type="webinar", at="2026-03-02T12:00:00Z", event_id="m2"),  # repeat: 0
        marketing("P1", "A2", activity_type="webinar", at="2026-03-03T12:00:00Z"),  # another activity: 150
    ])
    assert entries(r, "P1", source="m2") == []
    assert points(r, "P1") == (300, 0)
    assert r["alerts"] == [] and r["rejections"] == []
    assert r["events_applied"] == 4


def test_behaviour_points_are_neither_tier_multiplied_nor_capped():
    r = run([
        enrolled("P1"),
        # 25000 * 200 * 100 // 10000 = 50000: March capped exactly; silver
        sale("P1", "O1", amount_cents=2_500_000, category="software", at="2026-03-02T12:00:00Z"),
        training("P1", "T1", certification=False, at="2026-03-05T12:00:00Z"),  # 200, not x110%, not capped
        marketing("P1", "A1", activity_type="case_study", at="2026-03-06T12:00:00Z"),  # 750
    ])
    assert tier(r, "P1") == "silver"
    assert points(r, "P1") == (50950, 0)  # 50000 + 200 + 750


# ================================================================================== returns and clawback

def test_clawback_partial_repeated_and_over_returns():
    r = run([
        enrolled("P1"),
        # 10000 * 200 * 100 // 10000 = 20000
        sale("P1", "O1", amount_cents=1_000_000, category="software", at="2026-03-02T12:00:00Z"),
        # floor(20000 * 250000 / 1000000) - 0 = 5000
        returned("P1", "O1", amount_cents=250_000, at="2026-03-05T12:00:00Z", event_id="r1"),
        # floor(20000 * 500000 / 1000000) - 5000 = 5000
        returned("P1", "O1", amount_cents=250_000, at="2026-03-06T12:00:00Z", event_id="r2"),
        # returned total 1100000 is capped at the order's 1000000: floor(20000 * 1) - 10000 = 10000
        returned("P1", "O1", amount_cents=600_000, at="2026-03-07T12:00:00Z", event_id="r3"),
        # everything already clawed back: 20000 - 20000 = 0 -> no entry, not rejected
        returned("P1", "O1", amount_cents=100, at="2026-03-08T12:00:00Z", event_id="r4"),
    ])
    assert [e["delta_available"] for e in entries(r, "P1", kind="clawback")] == [-5000, -5000, -10000]
    assert deltas(r, "r1") == (-5000, 0)
    assert deltas(r, "r3") == (-10000, 0)
    assert entries(r, "P1", source="r4") == []
    assert points(r, "P1") == (0, 0)
    assert r["rejections"] == []
    assert r["events_applied"] == 6


def test_clawback_is_floored_on_the_returned_total():
    r = run([
        enrolled("P1"),
        # 333333 // 100 = 3333; 3333 * 200 * 100 // 10000 = 6666
        sale("P1", "O1", amount_cents=333_333, category="software", at="2026-03-02T12:00:00Z"),
        # floor(6666 * 100000 / 333333) = floor(1999.8) = 1999
        returned("P1", "O1", amount_cents=100_000, at="2026-03-05T12:00:00Z", event_id="r1"),
        # floor(6666 * 200000 / 333333) - 1999 = floor(3999.6) - 1999 = 3999 - 1999 = 2000
        returned("P1", "O1", amount_cents=100_000, at="2026-03-06T12:00:00Z", event_id="r2"),
    ])
    assert deltas(r, "r1") == (-1999, 0)
    assert deltas(r, "r2") == (-2000, 0)
    assert points(r, "P1") == (2667, 0)  # 6666 - 3999


def test_clawback_works_on_points_awarded_after_the_cap():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=2_000_000, category="software", at="2026-03-02T10:00:00Z"),  # 40000
        # 12000 by the formula, 10000 awarded after the cap
        sale("P1", "O2", amount_cents=600_000, category="software", at="2026-03-03T10:00:00Z"),
        # floor(10000 * 600000 / 600000) = 10000 (not 12000)
        returned("P1", "O2", amount_cents=600_000, at="2026-03-10T10:00:00Z", event_id="r1"),
    ])
    assert deltas(r, "r1") == (-10000, 0)
    assert points(r, "P1") == (40000, 0)


def test_clawback_covers_deal_bonus_and_spiff_units():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-10-01T12:00:00Z"),
        # 1000 + bonus 1000 * 10 // 100 = 100 + SPIFF 10 * 10 = 100 -> 1200 for the order
        sale("P1", "O1", amount_cents=100_000, category="devices", quantity=10, deal_id="D1",
             at="2026-10-05T12:00:00Z"),
        # floor(1200 * 50000 / 100000) = 600
        returned("P1", "O1", amount_cents=50_000, at="2026-10-10T12:00:00Z", event_id="r1"),
    ])
    assert deltas(r, "r1") == (-600, 0)
    assert points(r, "P1") == (600, 0)


def test_clawback_may_make_available_negative():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z"),  # 2000
        redemption("P1", "R1", points=2000, at="2026-03-03T12:00:00Z"),  # accepted: 0 left
        returned("P1", "O1", amount_cents=100_000, at="2026-03-04T12:00:00Z"),  # clawback 2000
    ])
    assert points(r, "P1") == (-2000, 0)


def test_return_of_a_held_order_is_taken_from_held():
    r = run([
        enrolled("P1"),
        # self-dealing: 1000 * 200 * 100 // 10000 = 2000 held
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z"),
        # floor(2000 * 50000 / 100000) = 1000 from held
        returned("P1", "O1", amount_cents=50_000, at="2026-03-04T12:00:00Z", event_id="r1"),
    ])
    assert deltas(r, "r1") == (0, -1000)
    assert [e["kind"] for e in entries(r, "P1", source="r1")] == ["clawback"]
    assert points(r, "P1") == (0, 1000)


def test_return_of_an_unknown_order_or_of_another_partners_order_is_rejected():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P2", "O2", amount_cents=100_000, at="2026-03-02T12:00:00Z"),  # 1000 for P2
        returned("P1", "NOPE", amount_cents=50_000, at="2026-03-04T12:00:00Z", event_id="r1"),
        # AMBIGUOUS: "a return may only name the returning partner's own order" -> unknown_order
        returned("P1", "O2", amount_cents=50_000, at="2026-03-05T12:00:00Z", event_id="r2"),
    ])
    assert rejections(r) == [("r1", "unknown_order"), ("r2", "unknown_order")]
    assert points(r, "P2") == (1000, 0)


# ================================================================================== redemptions

def test_redemption_accepted_spends_available():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),  # 500
        training("P1", "T2", certification=True, at="2026-03-02T12:00:00Z"),  # 500
        redemption("P1", "R1", points=600, at="2026-03-03T12:00:00Z", event_id="q1"),
        redemption("P1", "R2", points=400, at="2026-03-04T12:00:00Z", event_id="q2"),  # exactly the rest
    ])
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", source="q1")] == [
        ("redeem", -600, 0)]
    assert deltas(r, "q2") == (-400, 0)
    assert points(r, "P1") == (0, 0)  # 1000 - 600 - 400
    assert r["rejections"] == []


def test_redemption_insufficient_points():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),  # 500
        redemption("P1", "R1", points=501, at="2026-03-03T12:00:00Z", event_id="q1"),
    ])
    assert rejections(r) == [("q1", "insufficient_points")]
    assert points(r, "P1") == (500, 0)
    assert r["events_applied"] == 2


@pytest.mark.parametrize("requested", [0, -5])
def test_redemption_invalid_amount(requested):
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),
        redemption("P1", "R1", points=requested, at="2026-03-03T12:00:00Z", event_id="q1"),
    ])
    assert rejections(r) == [("q1", "invalid_amount")]
    assert points(r, "P1") == (500, 0)


def test_redemption_of_an_offboarded_partner_is_partner_inactive():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),  # 500
        offboarded("P1", at="2026-03-02T12:00:00Z"),
        redemption("P1", "R1", points=100, at="2026-03-03T12:00:00Z", event_id="q1"),
    ])
    assert rejections(r) == [("q1", "partner_inactive")]
    assert points(r, "P1") == (500, 0)


def test_redemption_checks_run_in_order_inactive_then_amount_then_points():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        offboarded("P1", at="2026-03-02T12:00:00Z"),
        # inactive and an invalid amount and no points: partner_inactive comes first
        redemption("P1", "R1", points=0, at="2026-03-03T12:00:00Z", event_id="q1"),
        # active, invalid amount and no points: invalid_amount comes before insufficient_points
        redemption("P2", "R2", points=-5, at="2026-03-03T12:00:00Z", event_id="q2"),
    ])
    assert rejections(r) == [("q1", "partner_inactive"), ("q2", "invalid_amount")]


def test_redemption_spends_available_only_not_held():
    r = run([
        enrolled("P1"),
        # self-dealing: 2000 held
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z"),
        redemption("P1", "R1", points=100, at="2026-03-03T12:00:00Z", event_id="q1"),
    ])
    assert rejections(r) == [("q1", "insufficient_points")]
    assert points(r, "P1") == (0, 2000)


def test_redemption_is_idempotent_on_redemption_id():
    r = run([
        enrolled("P1"),
        training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),  # 500
        redemption("P1", "R1", points=300, at="2026-03-03T12:00:00Z", event_id="q1"),  # accepted: 200 left
        # same redemption_id, new event_id: the first decision stands; nothing written, not a rejection
        redemption("P1", "R1", points=300, at="2026-03-04T12:00:00Z", event_id="q2"),
        # AMBIGUOUS: a repeat with different content is still a repeat of the redemption_id
        redemption("P1", "R1", points=100, at="2026-03-05T12:00:00Z", event_id="q3"),
    ])
    assert points(r, "P1") == (200, 0)
    assert entries(r, "P1", source="q2") == [] and entries(r, "P1", source="q3") == []
    assert r["rejections"] == []
    assert r["events_applied"] == 5


def test_a_rejected_redemption_decision_also_stands():
    r = run([
        enrolled("P1"),
        redemption("P1", "R1", points=300, at="2026-03-01T12:00:00Z", event_id="q1"),  # insufficient
        training("P1", "T1", certification=True, at="2026-03-02T12:00:00Z"),  # 500
        redemption("P1", "R1", points=300, at="2026-03-03T12:00:00Z", event_id="q2"),  # repeat: nothing
    ])
    assert rejections(r) == [("q1", "insufficient_points")]
    assert points(r, "P1") == (500, 0)
    assert r["events_applied"] == 3  # enrolment, training, the repeat


# ================================================================================== adjustments

def test_adjustments_apply_to_available_and_may_go_negative():
    r = run([
        enrolled("P1"),
        adjustment("P1", "A1", points=500, at="2026-03-01T12:00:00Z", event_id="a1"),
        adjustment("P1", "A2", points=-800, at="2026-03-02T12:00:00Z", event_id="a2"),
    ])
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", source="a1")] == [
        ("adjust", 500, 0)]
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", source="a2")] == [
        ("adjust", -800, 0)]
    assert points(r, "P1") == (-300, 0)  # 500 - 800
    assert r["alerts"] == []


def test_large_adjustment_alert_above_100000_either_sign():
    r = run([
        enrolled("P1"),
        adjustment("P1", "A1", points=100_000, at="2026-03-01T12:00:00Z",
                   event_id="a1"),  # |100000|: no alert
        adjustment("P1", "A2", points=100_001, at="2026-03-02T12:00:00Z", event_id="a2"),  # alert
        adjustment("P1", "A3", points=-100_001, at="2026-03-03T12:00:00Z", event_id="a3"),  # alert
    ])
    assert alert_ids(r) == ["large_adjustment:P1:a2", "large_adjustment:P1:a3"]
    assert alert(r, "large_adjustment:P1:a2")["severity"] == "medium"
    assert points(r, "P1") == (100_000, 0)  # 100000 + 100001 - 100001; medium holds nothing


def test_duplicate_adjustment_id_is_rejected():
    r = run([
        enrolled("P1"),
        adjustment("P1", "A1", points=500, at="2026-03-01T12:00:00Z", event_id="a1"),
        adjustment("P1", "A1", points=500, at="2026-03-02T12:00:00Z", event_id="a2"),
    ])
    assert rejections(r) == [("a2", "duplicate_adjustment")]
    assert points(r, "P1") == (500, 0)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"approved_by": OMIT}, "missing_field:approved_by"),
        ({"approved_by": ""}, "missing_field:approved_by"),  # an empty string counts as missing
        ({"reason": OMIT}, "missing_field:reason"),
        ({"reason": ""}, "missing_field:reason"),
    ],
)
def test_adjustment_without_approver_or_reason_is_rejected(overrides, reason):
    r = run([
        enrolled("P1"),
        adjustment("P1", "A1", points=500, at="2026-03-01T12:00:00Z", event_id="a1", **overrides),
    ])
    assert rejections(r) == [("a1", reason)]
    assert points(r, "P1") == (0, 0)


def test_adjustment_applies_to_an_offboarded_partner():
    r = run([
        enrolled("P1"),
        offboarded("P1", at="2026-03-01T12:00:00Z"),
        adjustment("P1", "A1", points=500, at="2026-03-02T12:00:00Z"),
    ])
    assert points(r, "P1") == (500, 0)
    assert r["rejections"] == []


# ================================================================================== rebates

@pytest.mark.parametrize(
    ("amount_cents", "expected_cents"),
    [
        (499_999, 0),         # $4,999.99: below $5,000 -> 0%, no entry
        (500_000, 5_000),     # $5,000.00: 1% (inclusive lower edge): 500000 * 1 // 100 = 5000
        (999_999, 9_999),     # $9,999.99: 1%: 9999.99 -> floor 9999
        (1_000_000, 20_000),  # $10,000.00: 2%: 1000000 * 2 // 100 = 20000
        (1_499_999, 29_999),  # $14,999.99: 2%: 29999.98 -> 29999
        (1_500_000, 45_000),  # $15,000.00: 3%: 1500000 * 3 // 100 = 45000
        (1_500_033, 45_000),  # $15,000.33: 3%: 45000.99 -> 45000
    ],
)
def test_rebate_bands_on_the_month_net_sales(amount_cents, expected_cents):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=amount_cents, at="2026-03-10T12:00:00Z"),
        period_closed("2026-03", event_id="c3"),
    ])
    assert rebate(r, "P1") == (expected_cents, 0)
    written = [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", account="rebate")]
    assert written == ([("rebate", expected_cents, 0)] if expected_cents else [])
    for e in entries(r, "P1", account="rebate"):
        assert e["source_event_id"] == "c3"


def test_rebate_applies_to_the_whole_month_net_of_returns():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=1_200_000, at="2026-03-05T12:00:00Z"),
        returned("P1", "O1", amount_cents=300_000, at="2026-03-20T12:00:00Z"),
        period_closed("2026-03"),
    ])
    assert rebate(r, "P1") == (9_000, 0)  # net 1200000 - 300000 = 900000 -> 1% = 9000


def test_a_return_lowers_the_month_of_the_return_and_a_negative_month_earns_nothing():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=1_200_000, at="2026-03-05T12:00:00Z"),
        period_closed("2026-03", event_id="c3"),  # March net 1200000 -> 2% = 24000
        returned("P1", "O1", amount_cents=300_000, at="2026-04-05T12:00:00Z"),
        period_closed("2026-04", event_id="c4"),  # April net -300000 -> 0, no entry
    ])
    assert rebate(r, "P1") == (24_000, 0)
    assert entries(r, "P1", account="rebate", source="c4") == []


def test_returned_amounts_beyond_the_order_do_not_lower_net_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),
        sale("P1", "O2", amount_cents=500_000, at="2026-03-06T12:00:00Z"),
        # 900000 returned on a 600000 order: only 600000 counts
        returned("P1", "O1", amount_cents=900_000, at="2026-03-20T12:00:00Z"),
        period_closed("2026-03"),
    ])
    assert rebate(r, "P1") == (5_000, 0)  # net 1100000 - 600000 = 500000 -> 1% = 5000


def test_net_sales_for_rebates_include_held_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, customer_id="P1", at="2026-03-05T12:00:00Z"),  # self-dealing
        period_closed("2026-03"),
    ])
    assert rebate(r, "P1") == (6_000, 0)  # 600000 * 1 // 100


def test_an_offboarded_partner_still_gets_its_rebate():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),
        offboarded("P1", at="2026-03-25T12:00:00Z"),
        period_closed("2026-03"),
    ])
    assert rebate(r, "P1") == (6_000, 0)


def test_rebates_are_per_partner():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),
        sale("P2", "O2", amount_cents=1_000_000, at="2026-03-06T12:00:00Z"),
        period_closed("2026-03"),
    ])
    assert rebate(r, "P1") == (6_000, 0)   # 1%
    assert rebate(r, "P2") == (20_000, 0)  # 2%


# ================================================================================== expiry

def test_points_expire_after_12_months_without_activity():
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=100_000, at="2025-01-15T12:00:00Z"),  # 1000
        period_closed("2025-12", event_id="c12"),  # 2025-01..2025-12 has the sale: nothing expires
        period_closed("2026-01", event_id="c1"),   # 2025-02..2026-01: no activity -> expire 1000
    ])
    assert entries(r, "P1", source="c12") == []
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", source="c1")] == [
        ("expire", -1000, 0)]
    assert points(r, "P1") == (0, 0)


@pytest.mark.parametrize("kind", ["training", "marketing", "sale"])
def test_any_training_marketing_or_sale_keeps_points_alive(kind):
    activity = {
        "training": training("P1", "T1", at="2025-03-10T12:00:00Z"),  # 200
        "marketing": marketing("P1", "A1", activity_type="webinar", at="2025-03-10T12:00:00Z"),  # 150
        "sale": sale("P1", "O2", amount_cents=100, at="2025-03-10T12:00:00Z"),  # 1
    }[kind]
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=100_000, at="2025-01-15T12:00:00Z"),  # 1000
        activity,
        period_closed("2026-01"),  # 2025-02..2026-01 holds the March activity: nothing expires
    ])
    assert entries(r, "P1", kind="expire") == []
    assert points(r, "P1")[0] == {"training": 1200, "marketing": 1150, "sale": 1001}[kind]


def test_redemptions_and_adjustments_are_not_activity():
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=100_000, at="2025-01-15T12:00:00Z"),  # 1000
        redemption("P1", "R1", points=100, at="2025-06-01T12:00:00Z"),  # 900 left
        adjustment("P1", "A1", points=50, at="2025-07-01T12:00:00Z"),  # 950
        period_closed("2026-01"),  # no sale, training or marketing in 2025-02..2026-01 -> expire 950
    ])
    assert [e["delta_available"] for e in entries(r, "P1", kind="expire")] == [-950]
    assert points(r, "P1") == (0, 0)


def test_held_points_and_rebates_do_not_expire():
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        sale("P1", "O1", amount_cents=600_000, at="2025-01-10T12:00:00Z"),  # 6000
        sale("P1", "O2", amount_cents=100_000, customer_id="P1", at="2025-01-12T12:00:00Z"),  # 1000 held
        period_closed("2025-01"),  # rebate: net 700000 (held sale included) -> 1% = 7000 cents
        period_closed("2026-01"),  # expire 6000 available; held 1000 and the rebate stay
    ])
    assert [e["delta_available"] for e in entries(r, "P1", kind="expire")] == [-6000]
    assert points(r, "P1") == (0, 1000)
    assert rebate(r, "P1") == (7_000, 0)


def test_a_negative_available_balance_does_not_expire():
    r = run([
        enrolled("P1", at="2025-01-01T00:00:00Z"),
        adjustment("P1", "A1", points=-500, at="2025-01-05T12:00:00Z"),
        period_closed("2026-01"),
    ])
    assert entries(r, "P1", kind="expire") == []
    assert points(r, "P1") == (-500, 0)


def test_only_partners_enrolled_before_the_end_of_the_month_take_part_in_its_close():
    r = run([
        enrolled("P2", at="2026-04-01T00:00:00Z"),  # after the end of March
        enrolled("P3", at="2026-03-31T23:59:59Z"),  # before the end of March
        adjustment("P2", "A2", points=500, at="2026-04-01T01:00:00Z"),
        adjustment("P3", "A3", points=500, at="2026-04-01T01:00:00Z"),
        # P3 takes part: no activity in 2025-04..2026-03 -> its 500 expire; P2 does not take part
        period_closed("2026-03"),
    ])
    assert points(r, "P2") == (500, 0)
    assert points(r, "P3") == (0, 0)
