"""Anomaly detectors, holds and their resolution (SPEC section 5, with the decisions of section 9).

Alert ids are ``ALERT_TYPE:PARTNER_ID:TRIGGER_EVENT_ID``; the tests name them before they exist.
Every replay goes through ``builders.run``, which also checks the ledger invariants.
"""

import pytest

from tests.unit.builders import (
    alert,
    alert_ids,
    anomaly,
    deal,
    deal_closed,
    enrolled,
    entries,
    offboarded,
    period_closed,
    points,
    rebate,
    redemption,
    rejections,
    resolved,
    returned,
    run,
    sale,
)


def kinds(r, pid, account="points"):
    return [e["kind"] for e in entries(r, pid, account=account)]


def cross_partner_claim():
    """P1 claims O1 (software $1,000 = 2000 points), then P2 claims O1 too (hardware $1,000 = 1000)."""
    return [
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z", event_id="s1"),
        sale("P2", "O1", amount_cents=100_000, category="hardware", at="2026-03-03T12:00:00Z", event_id="s2"),
    ]


# ================================================================================== duplicate_order

def test_duplicate_order_same_partner_earns_nothing_and_holds_nothing():
    r = run([
        enrolled("P1"),
        # 1000 * 200 * 100 // 10000 = 2000
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z", event_id="s1"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:30:00Z", event_id="s2"),
    ])
    assert points(r, "P1") == (2000, 0)
    assert entries(r, "P1", source="s2") == []
    assert "hold" not in kinds(r, "P1")
    assert alert_ids(r) == ["duplicate_order:P1:s2"]
    a = alert(r, "duplicate_order:P1:s2")
    assert (a["alert_type"], a["severity"], a["partner_id"], a["trigger_event_id"]) == (
        "duplicate_order", "high", "P1", "s2")
    assert r["rejections"] == []
    assert r["events_applied"] == 3


def test_a_same_partner_repeat_adds_nothing_to_net_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-02T12:00:00Z"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-03T12:00:00Z"),
        period_closed("2026-03"),
    ])
    # net $6,000 (not $12,000 at 2%) -> 1%: 600000 * 1 // 100 = 6000 cents
    assert rebate(r, "P1") == (6_000, 0)


def test_a_redelivered_event_id_is_not_a_duplicate_order():
    line = sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z",
                event_id="s1")
    r = run([enrolled("P1"), line, line])
    assert points(r, "P1") == (2000, 0)
    assert r["alerts"] == []
    assert r["events_ignored_duplicate"] == 1


def test_duplicate_order_across_partners_holds_both_claims_and_alerts_both_partners():
    r = run(cross_partner_claim())
    assert points(r, "P1") == (0, 2000)  # the first claimant's 2000 moved to held
    assert points(r, "P2") == (0, 1000)  # the new claim's 1000 are held
    assert sorted(alert_ids(r)) == ["duplicate_order:P1:s2", "duplicate_order:P2:s2"]
    for alert_id, pid in (("duplicate_order:P1:s2", "P1"), ("duplicate_order:P2:s2", "P2")):
        a = alert(r, alert_id)
        assert (a["alert_type"], a["severity"], a["partner_id"], a["trigger_event_id"]) == (
            "duplicate_order", "high", pid, "s2")
    assert [(e["delta_available"], e["delta_held"]) for e in entries(r, "P1", kind="hold")] == [(-2000, 2000)]


def test_dismissed_alert_releases_and_confirmed_alert_forfeits():
    r = run(cross_partner_claim() + [
        resolved("P1", "duplicate_order:P1:s2", decision="dismissed", at="2026-03-04T12:00:00Z",
                 event_id="x1"),
        resolved("P2", "duplicate_order:P2:s2", decision="confirmed", at="2026-03-04T12:00:00Z",
                 event_id="x2"),
    ])
    # AMBIGUOUS: release / forfeit entries carry the AlertResolved event as source_event_id
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", source="x1")] == [
        ("release", 2000, -2000)]
    assert [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P2", source="x2")] == [
        ("forfeit", 0, -1000)]
    assert points(r, "P1") == (2000, 0)
    assert points(r, "P2") == (0, 0)
    assert r["rejections"] == []


def test_cross_partner_claim_holds_the_first_claimants_points_left_after_returns():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z"),  # 2000
        # floor(2000 * 50000 / 100000) = 1000 clawed back; 1000 left on the order
        returned("P1", "O1", amount_cents=50_000, at="2026-03-03T12:00:00Z"),
        sale("P2", "O1", amount_cents=100_000, at="2026-03-04T12:00:00Z", event_id="s2"),
    ])
    assert points(r, "P1") == (0, 1000)
    assert points(r, "P2") == (0, 1000)


def test_cross_partner_claim_on_a_fully_returned_order_holds_nothing_but_still_alerts():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z"),  # 2000
        returned("P1", "O1", amount_cents=100_000, at="2026-03-03T12:00:00Z"),  # clawback 2000
        sale("P2", "O1", amount_cents=100_000, at="2026-03-04T12:00:00Z", event_id="s2"),
    ])
    assert points(r, "P1") == (0, 0)
    assert "hold" not in kinds(r, "P1")  # zero remaining points: no hold entry
    assert points(r, "P2") == (0, 1000)
    assert sorted(alert_ids(r)) == ["duplicate_order:P1:s2", "duplicate_order:P2:s2"]


def test_a_hold_may_make_available_negative():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z"),  # 2000
        redemption("P1", "R1", points=2000, at="2026-03-03T12:00:00Z"),  # 0 available
        sale("P2", "O1", amount_cents=100_000, at="2026-03-04T12:00:00Z"),
    ])
    assert points(r, "P1") == (-2000, 2000)


def test_only_accepted_sales_claim_an_order_id():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, currency="EUR", at="2026-03-02T12:00:00Z", event_id="s1"),
        sale("P2", "O1", amount_cents=100_000, at="2026-03-03T12:00:00Z"),
    ])
    assert rejections(r) == [("s1", "non_usd_currency")]
    assert r["alerts"] == []
    assert points(r, "P2") == (1000, 0)


# ================================================================================== near_duplicate_order

@pytest.mark.parametrize(
    ("second_at", "customer_id", "sku", "amount_cents", "expect_alert"),
    [
        ("2026-03-02T12:10:00Z", "ACME", "SKU-9", 100_000, True),   # exactly 10 minutes: |dt| <= 10 min
        ("2026-03-02T12:10:01Z", "ACME", "SKU-9", 100_000, False),  # 10 minutes 1 second
        ("2026-03-02T11:50:00Z", "ACME", "SKU-9", 100_000, True),   # earlier in time, later in the log
        ("2026-03-02T12:05:00Z", "OTHER", "SKU-9", 100_000, False),  # another customer
        ("2026-03-02T12:05:00Z", "ACME", "SKU-8", 100_000, False),   # another sku
        ("2026-03-02T12:05:00Z", "ACME", "SKU-9", 100_001, False),   # another amount
    ],
)
def test_near_duplicate_order(second_at, customer_id, sku, amount_cents, expect_alert):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:00:00Z"),
        sale("P1", "O2", amount_cents=amount_cents, customer_id=customer_id, sku=sku, at=second_at,
             event_id="s2"),
    ])
    assert alert_ids(r) == (["near_duplicate_order:P1:s2"] if expect_alert else [])
    if expect_alert:
        assert alert(r, "near_duplicate_order:P1:s2")["severity"] == "medium"
    assert points(r, "P1") == (2000, 0)  # medium: both sales earn 1000, nothing held


def test_near_duplicate_order_is_per_partner():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:00:00Z"),
        sale("P2", "O2", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:05:00Z"),
    ])
    assert r["alerts"] == []


def test_near_duplicate_order_alerts_once_for_a_sale_matching_several_earlier_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:00:00Z"),
        sale("P1", "O2", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:20:00Z"),
        # 10 minutes from both earlier sales
        sale("P1", "O3", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:10:00Z",
             event_id="s3"),
    ])
    assert alert_ids(r) == ["near_duplicate_order:P1:s3"]


# ================================================================================== channel_stuffing
# SPEC 5 (revised December 2026): at the close of M, net sales of M >= $20,000 AND > 3 x the average
# of M-3..M-1 (enrolled at or before the first instant of M-3) AND gross sales of the last 3 UTC days
# of M > 50% of M's net. Either signal alone is an ordinary lumpy month: nothing.

def march(enrolled_at, previous_cents, sales, then=()):
    """Dec, Jan, Feb: one sale of `previous_cents` each; March: `sales` [(cents, at)], then the
    lines `then`; close March."""
    lines = [
        enrolled("P1", at=enrolled_at),
        sale("P1", "O12", amount_cents=previous_cents, at="2025-12-10T12:00:00Z"),
        sale("P1", "O01", amount_cents=previous_cents, at="2026-01-10T12:00:00Z"),
        sale("P1", "O02", amount_cents=previous_cents, at="2026-02-10T12:00:00Z"),
    ]
    lines += [sale("P1", f"O03-{i}", amount_cents=cents, at=at) for i, (cents, at) in enumerate(sales)]
    return lines + list(then) + [period_closed("2026-03", event_id="c3")]


def test_channel_stuffing_both_signals_raise_the_alert_and_hold_the_months_rebate():
    # history: March net $8,000 + $12,000 = $20,000 >= $20,000 and > 3 x avg($2,000, $2,000, $2,000)
    #          = $6,000; enrolled at the first instant of December (M-3)
    # last 3 days: $12,000 on March 30 > 50% of $20,000 = $10,000
    r = run(march("2025-12-01T00:00:00Z", 200_000,
                  [(800_000, "2026-03-10T12:00:00Z"), (1_200_000, "2026-03-30T12:00:00Z")]))
    assert alert_ids(r, "channel_stuffing") == ["channel_stuffing:P1:c3"]
    a = alert(r, "channel_stuffing:P1:c3")
    assert (a["severity"], a["partner_id"], a["trigger_event_id"]) == ("high", "P1", "c3")
    # rebate 3% of 2000000 = 60000 cents, moved to held
    assert rebate(r, "P1") == (0, 60_000)


def test_channel_stuffing_history_alone_is_nothing():
    # March $20,000 > 3 x avg $2,000 = $6,000, but all of it on March 10: $0 in the last 3 days
    r = run(march("2025-12-01T00:00:00Z", 200_000, [(2_000_000, "2026-03-10T12:00:00Z")]))
    assert alert_ids(r, "channel_stuffing") == []
    assert rebate(r, "P1") == (60_000, 0)              # 3% of 2000000, not held


def test_channel_stuffing_last_three_days_alone_is_nothing():
    # $11,000 of $20,000 on March 29 (> 50%), but $20,000 is not > 3 x avg($7,000 x 3) = $21,000
    r = run(march("2025-12-01T00:00:00Z", 700_000,
                  [(900_000, "2026-03-10T12:00:00Z"), (1_100_000, "2026-03-29T00:00:00Z")]))
    assert alert_ids(r, "channel_stuffing") == []
    assert rebate(r, "P1") == (60_000, 0)


def test_channel_stuffing_both_signals_without_three_months_of_enrolment_is_nothing():
    # the numbers of the first case, but enrolled one second after the first instant of December
    r = run(march("2025-12-01T00:00:01Z", 200_000,
                  [(800_000, "2026-03-10T12:00:00Z"), (1_200_000, "2026-03-30T12:00:00Z")]))
    assert alert_ids(r, "channel_stuffing") == []
    assert rebate(r, "P1") == (60_000, 0)


@pytest.mark.parametrize(
    ("previous_cents", "sales", "expected_rebate"),
    [
        # $21,000 is not > 3 x avg(7,000, 7,000, 7,000) = 21,000 (all of it in the last 3 days)
        (700_000, [(2_100_000, "2026-03-30T12:00:00Z")], 63_000),
        # $19,999.99 is below $20,000 (all of it in the last 3 days, history 3 x $1,000)
        (100_000, [(1_999_999, "2026-03-30T12:00:00Z")], 59_999),        # floor(3% of 1999999)
        # exactly half in the last 3 days is not more than half
        (200_000, [(1_000_000, "2026-03-10T12:00:00Z"), (1_000_000, "2026-03-30T12:00:00Z")], 60_000),
        # the last 3 UTC days of March are 29, 30, 31: 28 23:59:59 is outside
        (200_000, [(900_000, "2026-03-10T12:00:00Z"), (1_100_000, "2026-03-28T23:59:59Z")], 60_000),
    ],
)
def test_channel_stuffing_edges_are_nothing(previous_cents, sales, expected_rebate):
    r = run(march("2025-12-01T00:00:00Z", previous_cents, sales))
    assert alert_ids(r, "channel_stuffing") == []
    assert rebate(r, "P1") == (expected_rebate, 0)


def test_channel_stuffing_last_days_of_february_are_26_to_28():
    # enrolled 2025-11-01 (M-3 of February 2026); Nov, Dec, Jan $2,000 each; February $9,000 on the
    # 5th + $11,000 on the 26th = $20,000 > $6,000, and $11,000 > 50%
    r = run([
        enrolled("P1", at="2025-11-01T00:00:00Z"),
        sale("P1", "O11", amount_cents=200_000, at="2025-11-10T12:00:00Z"),
        sale("P1", "O12", amount_cents=200_000, at="2025-12-10T12:00:00Z"),
        sale("P1", "O01", amount_cents=200_000, at="2026-01-10T12:00:00Z"),
        sale("P1", "O02a", amount_cents=900_000, at="2026-02-05T12:00:00Z"),
        sale("P1", "O02b", amount_cents=1_100_000, at="2026-02-26T00:00:00Z"),
        period_closed("2026-02", event_id="c2"),
    ])
    assert alert_ids(r, "channel_stuffing") == ["channel_stuffing:P1:c2"]


def test_channel_stuffing_last_three_days_compares_with_net_sales():
    # net 1500000 - 500000 + 1200000 = 2200000 > 3 x 200000; last 3 days gross 1200000 > 1100000
    # (50% of net) (against gross 2700000 it would be 1200000 < 1350000)
    r = run(march("2025-12-01T00:00:00Z", 200_000, [(1_500_000, "2026-03-10T12:00:00Z")], then=[
        returned("P1", "O03-0", amount_cents=500_000, at="2026-03-15T12:00:00Z"),
        sale("P1", "O2", amount_cents=1_200_000, at="2026-03-30T12:00:00Z"),
    ]))
    assert alert_ids(r, "channel_stuffing") == ["channel_stuffing:P1:c3"]
    assert rebate(r, "P1") == (0, 66_000)  # 3% of 2200000


def stuffed_march():
    # rebate 60000 cents, held by channel_stuffing:P1:c3
    return march("2025-12-01T00:00:00Z", 200_000, [], then=[
        sale("P1", "O1", amount_cents=900_000, at="2026-03-10T12:00:00Z"),
        sale("P1", "O2", amount_cents=1_100_000, at="2026-03-29T12:00:00Z"),
    ])


def test_period_close_writes_the_rebate_before_the_channel_stuffing_hold():
    # order of work at a close: rebate, then the channel-stuffing check that holds it
    r = run(stuffed_march())
    written = [(e["kind"], e["delta_available"], e["delta_held"]) for e in entries(r, "P1", account="rebate")]
    assert written == [("rebate", 60_000, 0), ("hold", -60_000, 60_000)]


@pytest.mark.parametrize(
    ("decision", "expected", "last_kind"),
    [("dismissed", (60_000, 0), "release"), ("confirmed", (0, 0), "forfeit")],
)
def test_held_rebate_is_not_reduced_by_later_returns_and_is_released_or_forfeited(decision, expected,
                                                                                  last_kind):
    lines = stuffed_march() + [
        returned("P1", "O2", amount_cents=1_100_000, at="2026-04-05T12:00:00Z"),
        resolved("P1", "channel_stuffing:P1:c3", decision=decision, at="2026-04-06T12:00:00Z"),
    ]
    assert rebate(run(lines[:-1]), "P1") == (0, 60_000)
    r = run(lines)
    assert rebate(r, "P1") == expected
    assert kinds(r, "P1", account="rebate") == ["rebate", "hold", last_kind]


# ================================================================================== return_spike

@pytest.mark.parametrize(
    ("february_cents", "march_return_cents", "expect_alert"),
    [
        (1_000_000, 300_001, True),   # 300001 > 30% of 1000000 = 300000
        (1_000_000, 300_000, False),  # exactly 30% is not more
        (999_999, 500_000, False),    # February gross $9,999.99 is below $10,000
    ],
)
def test_return_spike(february_cents, march_return_cents, expect_alert):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=february_cents, at="2026-02-10T12:00:00Z"),
        returned("P1", "O1", amount_cents=march_return_cents, at="2026-03-10T12:00:00Z"),
        period_closed("2026-03", event_id="c3"),
    ])
    assert alert_ids(r) == (["return_spike:P1:c3"] if expect_alert else [])
    if expect_alert:
        a = alert(r, "return_spike:P1:c3")
        assert (a["severity"], a["trigger_event_id"]) == ("medium", "c3")
        assert "hold" not in kinds(r, "P1") and "hold" not in kinds(r, "P1", account="rebate")


@pytest.mark.parametrize(
    ("o2_return_cents", "o1_return_cents", "expect_alert"),
    [
        # O2's 500000 counts as its order amount 100000: 100000 + 200000 = 300000 <= 30% of 1100000 = 330000
        (500_000, 200_000, False),
        (100_000, 240_000, True),  # 100000 + 240000 = 340000 > 330000
    ],
)
def test_return_spike_counts_each_return_capped_at_its_order(o2_return_cents, o1_return_cents, expect_alert):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=1_000_000, at="2026-02-10T12:00:00Z"),
        sale("P1", "O2", amount_cents=100_000, at="2026-02-11T12:00:00Z"),
        returned("P1", "O2", amount_cents=o2_return_cents, at="2026-03-10T12:00:00Z"),
        returned("P1", "O1", amount_cents=o1_return_cents, at="2026-03-11T12:00:00Z"),
        period_closed("2026-03", event_id="c3"),
    ])
    assert alert_ids(r) == (["return_spike:P1:c3"] if expect_alert else [])


# ================================================================================== deal_conflict

def test_deal_conflict_and_the_conflicted_deal_earns_no_bonus():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P1", "D1", customer_id="ACME", at="2026-01-10T12:00:00Z"),
        deal("P2", "D2", customer_id="ACME", at="2026-03-01T12:00:00Z", event_id="d2"),
        # conflicted: 10000 * 100 * 100 // 10000 = 10000, no bonus
        sale("P2", "O2", amount_cents=1_000_000, deal_id="D2", at="2026-03-05T12:00:00Z"),
        # P1's deal is not conflicted: 10000 + 1000
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-03-06T12:00:00Z"),
    ])
    assert alert_ids(r) == ["deal_conflict:P2:d2"]
    a = alert(r, "deal_conflict:P2:d2")
    assert (a["severity"], a["partner_id"], a["trigger_event_id"]) == ("medium", "P2", "d2")
    assert points(r, "P2") == (10000, 0)
    assert points(r, "P1") == (11000, 0)


@pytest.mark.parametrize(
    ("second_at", "expect_alert"),
    [
        # AMBIGUOUS: the exact 90-day instant (2026-04-01T00:00:00Z) is left untested
        ("2026-03-31T23:59:59Z", True),   # 89 days 23:59:59 after 2026-01-01T00:00:00Z
        ("2026-04-01T00:00:01Z", False),  # 90 days and 1 second
    ],
)
def test_deal_conflict_looks_back_90_days(second_at, expect_alert):
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P1", "D1", customer_id="ACME", at="2026-01-01T00:00:00Z"),
        deal("P2", "D2", customer_id="ACME", at=second_at, event_id="d2"),
    ])
    assert alert_ids(r) == (["deal_conflict:P2:d2"] if expect_alert else [])


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_closed_deal_does_not_conflict(outcome):
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P1", "D1", customer_id="ACME", at="2026-01-10T12:00:00Z"),
        deal_closed("P1", "D1", outcome=outcome, at="2026-01-20T12:00:00Z"),
        deal("P2", "D2", customer_id="ACME", at="2026-02-01T12:00:00Z"),
        sale("P2", "O2", amount_cents=1_000_000, deal_id="D2", at="2026-02-05T12:00:00Z"),  # 10000 + 1000
    ])
    assert r["alerts"] == []
    assert points(r, "P2") == (11000, 0)


def test_a_partners_own_deals_never_conflict():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-01-10T12:00:00Z"),
        deal("P1", "D3", customer_id="ACME", at="2026-01-20T12:00:00Z"),
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D3", at="2026-02-05T12:00:00Z"),  # 10000 + 1000
    ])
    assert r["alerts"] == []
    assert points(r, "P1") == (11000, 0)


def test_a_conflicted_open_deal_is_still_an_open_deal():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        enrolled("P3"),
        deal("P1", "D1", customer_id="ACME", at="2026-01-10T12:00:00Z"),
        deal("P2", "D2", customer_id="ACME", at="2026-01-20T12:00:00Z", event_id="d2"),  # conflicted
        deal_closed("P1", "D1", outcome="lost", at="2026-01-25T12:00:00Z"),
        deal("P3", "D3", customer_id="ACME", at="2026-02-01T12:00:00Z", event_id="d3"),  # P2's D2 is open
    ])
    assert alert_ids(r) == ["deal_conflict:P2:d2", "deal_conflict:P3:d3"]


# ================================================================================== self_dealing

@pytest.mark.parametrize("customer_id", ["P2", "P1"])  # another enrolled partner, or the seller itself
def test_self_dealing_holds_the_sales_points(customer_id):
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        # 1000 * 200 * 100 // 10000 = 2000, held
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id=customer_id,
             at="2026-03-02T12:00:00Z", event_id="s1"),
    ])
    assert alert_ids(r) == ["self_dealing:P1:s1"]
    a = alert(r, "self_dealing:P1:s1")
    assert (a["severity"], a["partner_id"], a["trigger_event_id"]) == ("high", "P1", "s1")
    assert points(r, "P1") == (0, 2000)


def test_self_dealing_needs_a_currently_enrolled_partner_id():
    # AMBIGUOUS: an offboarded partner is not "currently enrolled", so its id as customer is not self-dealing
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        offboarded("P2", at="2026-02-01T12:00:00Z"),
        # P2 is offboarded, P3 was never enrolled
        sale("P1", "O1", amount_cents=100_000, customer_id="P2", at="2026-03-02T12:00:00Z"),
        sale("P1", "O2", amount_cents=100_000, customer_id="P3", at="2026-03-03T12:00:00Z"),
    ])
    assert r["alerts"] == []
    assert points(r, "P1") == (2000, 0)


def test_self_dealing_holds_sale_deal_bonus_and_spiff_units_not_the_threshold_bonus():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="P1", at="2026-10-01T12:00:00Z"),
        # sale 1000 * 100 * 100 // 10000 = 1000; bonus 1000 * 10 // 100 = 100; SPIFF 100 * 10 = 1000
        # -> 2100 held; SPIFF threshold (100 units): 5000 to available
        sale("P1", "O1", amount_cents=100_000, category="devices", quantity=100, deal_id="D1",
             customer_id="P1", at="2026-10-05T12:00:00Z"),
    ])
    assert points(r, "P1") == (5000, 2100)


@pytest.mark.parametrize(("decision", "expected"), [("dismissed", (2000, 0)), ("confirmed", (0, 0))])
def test_self_dealing_resolution(decision, expected):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),
        resolved("P1", "self_dealing:P1:s1", decision=decision, at="2026-03-03T12:00:00Z"),
    ])
    assert points(r, "P1") == expected


def test_release_and_forfeit_move_what_remains_after_a_clawback_from_held():
    lines = [
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),  # 2000 held
        returned("P1", "O1", amount_cents=50_000, at="2026-03-03T12:00:00Z"),  # 1000 clawed back from held
    ]
    dismissed = run(lines + [
        resolved("P1", "self_dealing:P1:s1", decision="dismissed", at="2026-03-04T12:00:00Z")])
    assert points(dismissed, "P1") == (1000, 0)
    confirmed = run(lines + [
        resolved("P1", "self_dealing:P1:s1", decision="confirmed", at="2026-03-04T12:00:00Z")])
    assert points(confirmed, "P1") == (0, 0)
    assert [(e["delta_available"], e["delta_held"]) for e in entries(confirmed, "P1", kind="forfeit")] == [
        (0, -1000)]


def test_forfeited_points_are_not_clawed_back_again():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),  # 2000 held
        resolved("P1", "self_dealing:P1:s1", decision="confirmed", at="2026-03-03T12:00:00Z"),  # forfeit 2000
        returned("P1", "O1", amount_cents=100_000, at="2026-03-04T12:00:00Z", event_id="r1"),
    ])
    assert entries(r, "P1", source="r1") == []
    assert points(r, "P1") == (0, 0)


# ============================================================================= several alerts on one hold

def one_hold_two_alerts():
    return [
        enrolled("P1"),
        enrolled("P2"),
        # self-dealing: 2000 held by self_dealing:P1:s1
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),
        # P2 claims O1: P1's 2000 are now also held by duplicate_order:P1:s2
        sale("P2", "O1", amount_cents=100_000, at="2026-03-03T12:00:00Z", event_id="s2"),
    ]


def test_points_held_by_several_alerts_are_released_only_when_all_are_dismissed():
    lines = one_hold_two_alerts() + [
        resolved("P1", "self_dealing:P1:s1", decision="dismissed", at="2026-03-04T12:00:00Z"),
        resolved("P1", "duplicate_order:P1:s2", decision="dismissed", at="2026-03-05T12:00:00Z"),
    ]
    assert points(run(lines[:4]), "P1") == (0, 2000)
    assert points(run(lines[:5]), "P1") == (0, 2000)  # duplicate_order:P1:s2 still holds them
    r = run(lines)
    assert points(r, "P1") == (2000, 0)
    assert r["rejections"] == []


def test_points_held_by_several_alerts_are_forfeited_as_soon_as_one_is_confirmed():
    lines = one_hold_two_alerts() + [
        resolved("P1", "self_dealing:P1:s1", decision="confirmed", at="2026-03-04T12:00:00Z"),
        resolved("P1", "duplicate_order:P1:s2", decision="dismissed", at="2026-03-05T12:00:00Z"),
    ]
    assert points(run(lines[:5]), "P1") == (0, 0)
    r = run(lines)
    assert points(r, "P1") == (0, 0)  # nothing left to release
    assert r["rejections"] == []


# ================================================================================== velocity_spike

def test_velocity_spike_three_sales_over_20000_points_in_the_trailing_hour():
    r = run([
        enrolled("P1"),  # 2026-01-01: enrolled 7+ days
        # each 3500 * 200 * 100 // 10000 = 7000; 3 sales, 21000 > 20000 and > 10 x baseline 0
        sale("P1", "O1", amount_cents=350_000, category="software", at="2026-03-10T10:00:00Z"),
        sale("P1", "O2", amount_cents=350_000, category="software", at="2026-03-10T10:20:00Z"),
        sale("P1", "O3", amount_cents=350_000, category="software", at="2026-03-10T10:40:00Z", event_id="s3"),
    ])
    assert alert_ids(r) == ["velocity_spike:P1:s3"]
    a = alert(r, "velocity_spike:P1:s3")
    assert (a["severity"], a["partner_id"], a["trigger_event_id"]) == ("medium", "P1", "s3")
    assert points(r, "P1") == (21000, 0)  # medium: nothing held


@pytest.mark.parametrize(
    "sales",
    [
        # two sales only: 12000 + 12000 = 24000
        [(600_000, "2026-03-10T10:00:00Z"), (600_000, "2026-03-10T10:20:00Z")],
        # 7000 + 7000 + 6000 = 20000 is not > 20000
        [(350_000, "2026-03-10T10:00:00Z"), (350_000, "2026-03-10T10:20:00Z"),
         (300_000, "2026-03-10T10:40:00Z")],
        # window (10:00, 11:00] excludes the 10:00 sale: two sales
        [(350_000, "2026-03-10T10:00:00Z"), (350_000, "2026-03-10T10:30:00Z"),
         (350_000, "2026-03-10T11:00:00Z")],
        # one large order alone: 50000 * 200 * 100 // 10000 = 100000 sale points
        # AMBIGUOUS: only the single-order case is tested; 2 tiny sales + 1 large one literally meets the rule
        [(5_000_000, "2026-03-10T10:00:00Z")],
    ],
)
def test_no_velocity_spike(sales):
    lines = [enrolled("P1")]
    lines += [sale("P1", f"O{i}", amount_cents=amount, category="software", at=at)
              for i, (amount, at) in enumerate(sales)]
    r = run(lines)
    assert alert_ids(r, "velocity_spike") == []


def test_velocity_spike_once_per_partner_and_clock_hour():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=350_000, category="software", at="2026-03-10T10:00:00Z"),  # 7000
        sale("P1", "O2", amount_cents=350_000, category="software", at="2026-03-10T10:20:00Z"),  # 7000
        sale("P1", "O3", amount_cents=350_000, category="software", at="2026-03-10T10:40:00Z",
             event_id="s3"),  # 21000 in (09:40, 10:40] -> alert, hour 10
        sale("P1", "O4", amount_cents=350_000, category="software", at="2026-03-10T10:50:00Z",
             event_id="s4"),  # 28000, but hour 10 already alerted
        sale("P1", "O5", amount_cents=350_000, category="software", at="2026-03-10T11:05:00Z",
             event_id="s5"),  # (10:05, 11:05]: O2..O5 = 28000 -> alert, hour 11
    ])
    assert alert_ids(r, "velocity_spike") == ["velocity_spike:P1:s3", "velocity_spike:P1:s5"]
    assert points(r, "P1") == (35000, 0)  # 5 x 7000


@pytest.mark.parametrize(
    ("enrolled_at", "expect_alert"),
    [("2026-03-04T10:00:00Z", False), ("2026-03-02T10:00:00Z", True)],  # 6 days / 8 days before the sales
)
def test_velocity_spike_needs_a_partner_enrolled_7_days(enrolled_at, expect_alert):
    r = run([
        enrolled("P1", at=enrolled_at),
        sale("P1", "O1", amount_cents=350_000, category="software", at="2026-03-10T10:00:00Z"),
        sale("P1", "O2", amount_cents=350_000, category="software", at="2026-03-10T10:20:00Z"),
        sale("P1", "O3", amount_cents=350_000, category="software", at="2026-03-10T10:40:00Z", event_id="s3"),
    ])
    assert alert_ids(r, "velocity_spike") == (["velocity_spike:P1:s3"] if expect_alert else [])


@pytest.mark.parametrize(
    ("earlier_at", "expect_alert"),
    [
        # inside the 30 days before the window: baseline 2000000 / 720 = 2777.7; 10x = 27777.7 >= 23100
        ("2026-02-20T10:00:00Z", False),
        # more than 30 days before the window: baseline 0
        ("2026-01-20T10:00:00Z", True),
    ],
)
def test_velocity_spike_baseline_is_the_30_days_before_the_window_over_720(earlier_at, expect_alert):
    r = run([
        enrolled("P1"),
        # formula points 1000000 * 200 * 100 // 10000 = 2000000 (50000 awarded after the cap); silver after
        sale("P1", "O0", amount_cents=100_000_000, category="software", at=earlier_at),
        # silver: 3500 * 200 * 110 // 10000 = 7700 each; 3 x 7700 = 23100 > 20000
        sale("P1", "O1", amount_cents=350_000, category="software", at="2026-03-10T10:00:00Z"),
        sale("P1", "O2", amount_cents=350_000, category="software", at="2026-03-10T10:20:00Z"),
        sale("P1", "O3", amount_cents=350_000, category="software", at="2026-03-10T10:40:00Z", event_id="s3"),
    ])
    assert alert_ids(r, "velocity_spike") == (["velocity_spike:P1:s3"] if expect_alert else [])


def test_velocity_spike_uses_sale_points_before_the_cap():
    r = run([
        enrolled("P1"),
        # 25000 * 200 * 100 // 10000 = 50000: March capped; silver; baseline 50000 / 720 = 69.4 (10x = 694.4)
        sale("P1", "O0", amount_cents=2_500_000, category="software", at="2026-03-01T00:00:00Z"),
        # 7700 each by the formula, 0 awarded: 23100 > 20000
        sale("P1", "O1", amount_cents=350_000, category="software", at="2026-03-10T10:00:00Z"),
        sale("P1", "O2", amount_cents=350_000, category="software", at="2026-03-10T10:20:00Z"),
        sale("P1", "O3", amount_cents=350_000, category="software", at="2026-03-10T10:40:00Z", event_id="s3"),
    ])
    assert alert_ids(r, "velocity_spike") == ["velocity_spike:P1:s3"]
    assert points(r, "P1") == (50000, 0)


def test_velocity_spike_ignores_duplicate_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, category="software", at="2026-03-10T10:00:00Z"),  # 12000
        sale("P1", "O1", amount_cents=600_000, category="software", at="2026-03-10T10:10:00Z",
             event_id="s2"),  # same-partner duplicate: not a sale for velocity
        sale("P1", "O2", amount_cents=600_000, category="software", at="2026-03-10T10:20:00Z"),  # 12000
    ])
    assert alert_ids(r) == ["duplicate_order:P1:s2"]
    assert points(r, "P1") == (24000, 0)


def test_velocity_spike_counts_held_sales():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=350_000, category="software", customer_id="P1",
             at="2026-03-10T10:00:00Z"),
        sale("P1", "O2", amount_cents=350_000, category="software", customer_id="P1",
             at="2026-03-10T10:20:00Z"),
        sale("P1", "O3", amount_cents=350_000, category="software", customer_id="P1",
             at="2026-03-10T10:40:00Z", event_id="s3"),
    ])
    assert alert_ids(r, "velocity_spike") == ["velocity_spike:P1:s3"]
    assert points(r, "P1") == (0, 21000)  # three self-dealing holds of 7000


# ================================================================================== recorded AnomalyDetected

def test_recorded_anomaly_with_an_existing_alert_id_is_a_no_op():
    lines = cross_partner_claim()
    before = run(lines)
    r = run(lines + [
        anomaly("P1", "duplicate_order:P1:s2", alert_type="duplicate_order", severity="high",
                trigger_event_id="s2", hold_order_id="O1", at="2026-03-03T12:00:01Z"),
    ])
    assert r["partners"] == before["partners"]
    assert r["ledger"] == before["ledger"]
    assert alert_ids(r) == alert_ids(before)
    assert r["rejections"] == []
    # AMBIGUOUS: the no-op is an applied event (section 9 counts events that change nothing)
    assert r["events_applied"] == 5


def test_recorded_high_anomaly_holds_the_orders_points_and_can_be_dismissed():
    lines = [
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z", event_id="s1"),
        anomaly("P1", "self_dealing:P1:s1", alert_type="self_dealing", severity="high", trigger_event_id="s1",
                hold_order_id="O1", at="2026-03-02T12:00:01Z"),
        resolved("P1", "self_dealing:P1:s1", decision="dismissed", at="2026-03-03T12:00:00Z"),
    ]
    held = run(lines[:3])
    assert points(held, "P1") == (0, 2000)
    assert alert_ids(held) == ["self_dealing:P1:s1"]
    assert points(run(lines), "P1") == (2000, 0)


def test_recorded_medium_anomaly_raises_an_alert_without_a_hold():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", at="2026-03-02T12:00:00Z", event_id="s1"),
        anomaly("P1", "near_duplicate_order:P1:s1", alert_type="near_duplicate_order", severity="medium",
                trigger_event_id="s1", at="2026-03-02T12:00:01Z"),
    ])
    assert alert_ids(r) == ["near_duplicate_order:P1:s1"]
    assert points(r, "P1") == (2000, 0)


def test_a_medium_alert_can_be_resolved_and_changes_no_balance():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:00:00Z"),
        sale("P1", "O2", amount_cents=100_000, customer_id="ACME", sku="SKU-9", at="2026-03-02T12:05:00Z",
             event_id="s2"),
        resolved("P1", "near_duplicate_order:P1:s2", decision="confirmed", at="2026-03-03T12:00:00Z"),
    ])
    assert alert_ids(r) == ["near_duplicate_order:P1:s2"]
    assert points(r, "P1") == (2000, 0)  # 1000 + 1000: a medium alert holds nothing, so nothing is forfeited
    assert r["rejections"] == []


def test_alert_resolution_applies_after_offboarding():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),
        offboarded("P1", at="2026-03-03T12:00:00Z"),
        resolved("P1", "self_dealing:P1:s1", decision="dismissed", at="2026-03-04T12:00:00Z"),
    ])
    assert points(r, "P1") == (2000, 0)
    assert r["rejections"] == []
