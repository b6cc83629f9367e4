"""SPEC section 9, "Edge cases, decided": bookkeeping, every rejection reason, offboarding, --until.

Every replay goes through ``builders.run``, which also checks the ledger invariants and that each line is
exactly one of applied, ignored duplicate or rejected.
"""

import json

import pytest

from tests.unit.builders import (
    OMIT,
    adjustment,
    alert_ids,
    deal,
    deal_closed,
    enrolled,
    entries,
    event,
    marketing,
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
    tier,
    training,
)

# ============================================================================= deduplication and counting

def test_a_redelivered_event_id_is_ignored_and_counted():
    t1 = training("P1", "T1", at="2026-03-01T12:00:00Z", event_id="t1")  # 200
    r = run([enrolled("P1"), t1, t1, t1])
    assert points(r, "P1") == (200, 0)
    assert r["events_ignored_duplicate"] == 2
    assert r["events_applied"] == 2
    assert r["rejections"] == []


def test_dedup_is_by_event_id_alone():
    r = run([
        enrolled("P1"),
        training("P1", "T1", at="2026-03-01T12:00:00Z", event_id="t1"),  # 200
        training("P1", "T2", certification=True, at="2026-03-02T12:00:00Z",
                 event_id="t1"),  # same id: ignored
    ])
    assert points(r, "P1") == (200, 0)
    assert r["events_ignored_duplicate"] == 1


def test_dedup_covers_rejected_events_which_are_rejected_once():
    bad = sale("P9", "O1", amount_cents=100_000, at="2026-03-01T12:00:00Z", event_id="x1")
    r = run([enrolled("P1"), bad, bad])
    assert rejections(r) == [("x1", "unknown_partner")]
    assert r["events_ignored_duplicate"] == 1
    assert r["events_applied"] == 1


def test_events_that_change_nothing_count_as_applied():
    r = run([
        enrolled("P1"),
        training("P1", "T1", at="2026-03-01T12:00:00Z"),  # 200
        training("P1", "T1", at="2026-03-02T12:00:00Z"),  # repeated course: nothing
        redemption("P1", "R1", points=100, at="2026-03-03T12:00:00Z"),  # accepted: 100 left
        redemption("P1", "R1", points=100, at="2026-03-04T12:00:00Z"),  # repeated redemption_id: nothing
        sale("P1", "O1", amount_cents=100_000, at="2026-03-05T12:00:00Z"),  # 1000
        sale("P1", "O1", amount_cents=100_000, at="2026-03-06T12:00:00Z"),  # same-partner duplicate: nothing
    ])
    assert r["events_applied"] == 7
    assert r["events_ignored_duplicate"] == 0
    assert r["rejections"] == []
    assert points(r, "P1") == (1100, 0)  # 200 - 100 + 1000


def test_a_period_close_is_one_applied_event_for_all_partners():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),
        sale("P2", "O2", amount_cents=700_000, at="2026-03-05T12:00:00Z"),
        period_closed("2026-03"),
    ])
    assert r["events_applied"] == 5
    assert rebate(r, "P1") == (6_000, 0)  # 1% of 600000
    assert rebate(r, "P2") == (7_000, 0)  # 1% of 700000


# ================================================================================== undecodable input

def test_an_undecodable_line_is_listed_by_its_1_based_line_number():
    r = run([
        enrolled("P1"),
        "this is not json",
        training("P1", "T1", at="2026-03-01T12:00:00Z"),
        '{"event_id": "t9", "event_type": "TrainingCompleted", "partner_id": "P1"',  # cut short
    ])
    assert rejections(r) == [("line:2", "undecodable"), ("line:4", "undecodable")]
    assert r["events_applied"] == 2
    assert points(r, "P1") == (200, 0)


@pytest.mark.parametrize("event_id", [OMIT, ""])
def test_a_line_without_event_id_is_listed_by_line_number(event_id):
    r = run([
        enrolled("P1"),
        training("P1", "T1", at="2026-03-01T12:00:00Z", event_id=event_id),
    ])
    # AMBIGUOUS: the row is named line:<n>; its reason is read as missing_field:event_id
    # (an empty string counts as missing)
    assert rejections(r) == [("line:2", "missing_field:event_id")]
    assert points(r, "P1") == (0, 0)


def test_unknown_event_type():
    r = run([
        enrolled("P1"),
        event("PartnerPromoted", "P1", "2026-03-01T12:00:00Z", event_id="u1", level="gold"),
    ])
    assert rejections(r) == [("u1", "unknown_event_type")]


# ================================================================================== field validation

@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (sale("P1", OMIT, amount_cents=100_000, at="2026-03-01T12:00:00Z", event_id="x"),
         "missing_field:order_id"),
        (sale("P1", "O1", amount_cents=100_000, at="2026-03-01T12:00:00Z", customer_id="", event_id="x"),
         "missing_field:customer_id"),  # an empty string counts as missing
        (sale("P1", "O1", amount_cents=100_000, at="2026-03-01T12:00:00Z", category="", event_id="x"),
         "missing_field:category"),
        (sale("P1", "O1", amount_cents=OMIT, at="2026-03-01T12:00:00Z", event_id="x"),
         "missing_field:amount_cents"),
        (training("P1", OMIT, at="2026-03-01T12:00:00Z", event_id="x"), "missing_field:course_id"),
        (training("P1", "T1", at=OMIT, event_id="x"), "missing_field:occurred_at"),
        (enrolled("P2", name="", event_id="x"), "missing_field:name"),
        (returned("P1", "", amount_cents=100, at="2026-03-01T12:00:00Z", event_id="x"),
         "missing_field:order_id"),
    ],
)
def test_missing_field(line, reason):
    r = run([enrolled("P1"), line])
    assert rejections(r) == [("x", reason)]
    assert points(r, "P1") == (0, 0)


def test_a_missing_partner_id_is_missing_field():
    r = run([enrolled("P1"), training(OMIT, "T1", at="2026-03-01T12:00:00Z", event_id="x")])
    assert rejections(r) == [("x", "missing_field:partner_id")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (training("P1", "T1", at="yesterday", event_id="x"), "invalid_field:occurred_at"),
        (sale("P1", "O1", amount_cents="ten dollars", at="2026-03-01T12:00:00Z", event_id="x"),
         "invalid_field:amount_cents"),
    ],
)
def test_invalid_field(line, reason):
    # AMBIGUOUS: a value of the wrong type or format is invalid_field:<field>
    r = run([enrolled("P1"), line])
    assert rejections(r) == [("x", reason)]


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([enrolled("P2", segment="enterprise", event_id="x")], "unknown_enum:segment"),
        ([deal("P1", "D1", customer_id="ACME", at="2026-03-01T12:00:00Z"),
          deal_closed("P1", "D1", outcome="maybe", at="2026-03-02T12:00:00Z",
                      event_id="x")], "unknown_enum:outcome"),
        ([training("P1", "T1", certification=True, at="2026-03-01T12:00:00Z"),
          redemption("P1", "R1", points=100, reward="cash", at="2026-03-02T12:00:00Z", event_id="x")],
         "unknown_enum:reward"),
        ([marketing("P1", "A1", activity_type="podcast", at="2026-03-01T12:00:00Z", event_id="x")],
         "unknown_enum:activity_type"),
        ([sale("P1", "O1", amount_cents=100_000, customer_id="P1", at="2026-03-01T12:00:00Z", event_id="s1"),
          resolved("P1", "self_dealing:P1:s1", decision="ignored", at="2026-03-02T12:00:00Z", event_id="x")],
         "unknown_enum:decision"),
    ],
)
def test_unknown_enum_value(lines, reason):
    r = run([enrolled("P1")] + lines)
    assert rejections(r) == [("x", reason)]


def test_category_is_a_free_string():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, category="quantum-widgets", at="2026-03-01T12:00:00Z"),
    ])
    assert r["rejections"] == []
    assert points(r, "P1") == (1000, 0)  # 1000 * 100 * 100 // 10000


@pytest.mark.parametrize("currency", ["EUR", "usd", "USD "])
def test_currency_must_be_exactly_usd(currency):
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, currency=currency, at="2026-03-01T12:00:00Z", event_id="x"),
    ])
    assert rejections(r) == [("x", "non_usd_currency")]
    assert points(r, "P1") == (0, 0)


def test_currency_and_source_have_defaults():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, currency=OMIT, source=OMIT, at="2026-03-01T12:00:00Z"),
    ])
    assert r["rejections"] == []
    assert points(r, "P1") == (1000, 0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (sale("P1", "O1", amount_cents=-1, at="2026-03-01T12:00:00Z", event_id="x"), "invalid_amount"),
        (sale("P1", "O1", amount_cents=100_000, quantity=-1, at="2026-03-01T12:00:00Z", event_id="x"),
         "invalid_quantity"),
        (returned("P1", "O0", amount_cents=0, at="2026-03-02T12:00:00Z", event_id="x"), "invalid_amount"),
        (returned("P1", "O0", amount_cents=-100, at="2026-03-02T12:00:00Z", event_id="x"), "invalid_amount"),
    ],
)
def test_invalid_amounts_and_quantities(line, reason):
    r = run([
        enrolled("P1"),
        sale("P1", "O0", amount_cents=100_000, at="2026-02-01T12:00:00Z"),  # 1000
        line,
    ])
    assert rejections(r) == [("x", reason)]
    assert points(r, "P1") == (1000, 0)


def test_zero_amount_and_zero_quantity_sales_are_accepted():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=0, at="2026-03-01T12:00:00Z"),  # 0 points, no entry
        sale("P1", "O2", amount_cents=100_000, quantity=0, at="2026-03-02T12:00:00Z"),  # 1000
    ])
    assert r["rejections"] == []
    assert r["events_applied"] == 3
    assert points(r, "P1") == (1000, 0)


# ================================================================================== partners

def test_events_for_a_partner_never_enrolled_are_unknown_partner():
    r = run([
        enrolled("P1"),
        sale("P9", "O1", amount_cents=100_000, at="2026-03-01T12:00:00Z", event_id="x1"),
        training("P9", "T1", at="2026-03-01T12:00:00Z", event_id="x2"),
    ])
    assert rejections(r) == [("x1", "unknown_partner"), ("x2", "unknown_partner")]
    assert "P9" not in r["partners"]


@pytest.mark.parametrize(
    "line",
    [
        sale("P1", "O9", amount_cents=100_000, at="2026-03-10T12:00:00Z", event_id="x"),
        deal("P1", "D9", customer_id="ACME", at="2026-03-10T12:00:00Z", event_id="x"),
        training("P1", "T9", at="2026-03-10T12:00:00Z", event_id="x"),
        marketing("P1", "A9", activity_type="webinar", at="2026-03-10T12:00:00Z", event_id="x"),
        redemption("P1", "R9", points=10, at="2026-03-10T12:00:00Z", event_id="x"),
    ],
    ids=["sale", "deal", "training", "marketing", "redemption"],
)
def test_after_offboarding_activity_is_partner_inactive(line):
    r = run([
        enrolled("P1"),
        training("P1", "T1", at="2026-03-01T12:00:00Z"),  # 200
        offboarded("P1", at="2026-03-05T12:00:00Z"),
        line,
    ])
    assert rejections(r) == [("x", "partner_inactive")]
    assert points(r, "P1") == (200, 0)


def test_after_offboarding_returns_deal_closes_adjustments_resolutions_anomalies_and_closes_apply():
    r = run([
        enrolled("P1"),
        deal("P1", "D1", customer_id="ACME", at="2026-03-01T12:00:00Z"),
        # 6000 * 200 * 100 // 10000 = 12000, self-dealing: held
        sale("P1", "O1", amount_cents=600_000, category="software", customer_id="P1",
             at="2026-03-02T12:00:00Z", event_id="s1"),
        sale("P1", "O2", amount_cents=100_000, at="2026-03-03T12:00:00Z", event_id="s2"),  # 1000
        offboarded("P1", at="2026-03-05T12:00:00Z"),
        returned("P1", "O2", amount_cents=50_000, at="2026-03-06T12:00:00Z"),  # floor(1000 * 1/2) = 500
        deal_closed("P1", "D1", outcome="won", at="2026-03-07T12:00:00Z"),
        adjustment("P1", "A1", points=300, at="2026-03-08T12:00:00Z"),  # +300
        resolved("P1", "self_dealing:P1:s1", decision="dismissed",
                 at="2026-03-09T12:00:00Z"),  # 12000 released
        event("AnomalyDetected", "P1", "2026-03-10T12:00:00Z", alert_id="near_duplicate_order:P1:s2",
              alert_type="near_duplicate_order", severity="medium", trigger_event_id="s2",
              evidence="recorded"),
        # net March 600000 + 100000 - 50000 = 650000 -> 1% = 6500 cents
        period_closed("2026-03"),
    ])
    assert r["rejections"] == []
    assert points(r, "P1") == (12800, 0)  # 12000 + 1000 - 500 + 300
    assert rebate(r, "P1") == (6_500, 0)
    assert "near_duplicate_order:P1:s2" in alert_ids(r)


def test_enrolling_an_active_partner_is_already_enrolled():
    r = run([enrolled("P1"), enrolled("P1", at="2026-02-01T00:00:00Z", event_id="x")])
    assert rejections(r) == [("x", "already_enrolled")]


def test_re_enrolment_reactivates_an_offboarded_partner_with_its_balances():
    r = run([
        enrolled("P1"),
        training("P1", "T1", at="2026-03-01T12:00:00Z"),  # 200
        offboarded("P1", at="2026-03-05T12:00:00Z"),
        enrolled("P1", at="2026-04-01T00:00:00Z"),
        training("P1", "T2", at="2026-04-02T12:00:00Z"),  # 200
    ])
    assert r["rejections"] == []
    assert points(r, "P1") == (400, 0)


def test_partners_lists_every_partner_ever_enrolled():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        offboarded("P2", at="2026-03-05T12:00:00Z"),
        training("P9", "T1", at="2026-03-06T12:00:00Z"),  # unknown_partner
    ])
    assert set(r["partners"]) == {"P1", "P2"}
    assert tier(r, "P2") == "registered"
    assert points(r, "P2") == (0, 0)
    assert rebate(r, "P2") == (0, 0)
    assert r["partners"]["P2"]["ledger_entries"] == 0


# ================================================================================== deals

def test_deal_id_is_globally_unique():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P1", "D1", customer_id="ACME", at="2026-03-01T12:00:00Z"),
        deal("P1", "D1", customer_id="ACME", at="2026-03-02T12:00:00Z", event_id="x1"),
        deal("P2", "D1", customer_id="OTHER", at="2026-03-03T12:00:00Z", event_id="x2"),
    ])
    assert rejections(r) == [("x1", "duplicate_deal"), ("x2", "duplicate_deal")]


def test_deal_close_must_come_from_the_registering_partner_once():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        deal("P1", "D1", customer_id="ACME", at="2026-03-01T12:00:00Z"),
        deal_closed("P1", "D9", outcome="won", at="2026-03-02T12:00:00Z", event_id="x1"),  # no such deal
        deal_closed("P2", "D1", outcome="won", at="2026-03-03T12:00:00Z", event_id="x2"),  # not P2's deal
        deal_closed("P1", "D1", outcome="won", at="2026-03-04T12:00:00Z"),
        deal_closed("P1", "D1", outcome="lost", at="2026-03-05T12:00:00Z", event_id="x3"),  # closed already
        # still won: 10000 + 10000 * 10 // 100 = 11000
        sale("P1", "O1", amount_cents=1_000_000, deal_id="D1", at="2026-03-06T12:00:00Z"),
    ])
    assert rejections(r) == [("x1", "unknown_deal"), ("x2", "unknown_deal"), ("x3", "deal_already_closed")]
    assert points(r, "P1") == (11000, 0)


# ================================================================================== alert resolutions

def test_alert_resolution_must_name_an_open_alert_of_its_own_partner():
    r = run([
        enrolled("P1"),
        enrolled("P2"),
        # self-dealing: 1000 * 200 * 100 // 10000 = 2000 held
        sale("P1", "O1", amount_cents=100_000, category="software", customer_id="P1",
             at="2026-03-01T12:00:00Z", event_id="s1"),
        resolved("P1", "self_dealing:P1:nope", decision="dismissed", at="2026-03-02T12:00:00Z",
                 event_id="x1"),
        resolved("P2", "self_dealing:P1:s1", decision="dismissed", at="2026-03-03T12:00:00Z", event_id="x2"),
        resolved("P1", "self_dealing:P1:s1", decision="dismissed", at="2026-03-04T12:00:00Z", event_id="x3"),
        resolved("P1", "self_dealing:P1:s1", decision="confirmed", at="2026-03-05T12:00:00Z", event_id="x4"),
    ])
    assert rejections(r) == [
        ("x1", "unknown_alert"), ("x2", "unknown_alert"), ("x4", "alert_already_resolved")]
    assert points(r, "P1") == (2000, 0)  # released by x3, not forfeited by x4


# ================================================================================== periods

def test_a_second_close_of_a_period_is_rejected():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),
        period_closed("2026-03"),  # 1% of 600000 = 6000 cents
        period_closed("2026-03", at="2026-04-02T00:00:00Z", event_id="x"),
    ])
    assert rejections(r) == [("x", "period_already_closed")]
    assert rebate(r, "P1") == (6_000, 0)


def test_nothing_is_re_rated_but_a_late_sale_still_counts_for_tiers():
    r = run([
        enrolled("P1"),
        sale("P1", "O1", amount_cents=600_000, at="2026-03-05T12:00:00Z"),  # 6000
        period_closed("2026-03"),  # March rebate fixed: 1% of 600000 = 6000 cents
        # late March sale: rated at registered 20000; net March now $26,000 -> silver at once
        sale("P1", "O2", amount_cents=2_000_000, at="2026-03-20T12:00:00Z", event_id="s2"),
    ])
    assert rebate(r, "P1") == (6_000, 0)
    assert entries(r, "P1", account="rebate", source="s2") == []
    assert points(r, "P1") == (26000, 0)
    assert tier(r, "P1") == "silver"


# ================================================================================== --until

def until_lines():
    return [
        enrolled("P1"),
        sale("P1", "O1", amount_cents=100_000, at="2026-10-31T23:59:59Z", event_id="s1"),  # 1000, kept
        sale("P1", "O2", amount_cents=200_000, at="2026-11-01T00:00:00Z", event_id="s2"),  # 2000, dropped
        sale("P1", "O3", amount_cents=400_000, at="2026-10-15T12:00:00Z", event_id="s3"),  # 4000, kept
        period_closed("2026-10", event_id="c10"),  # occurs 2026-11-01T00:00:00Z: dropped
    ]


def test_until_keeps_events_with_occurred_at_up_to_and_including_the_timestamp():
    r = run(until_lines(), until="2026-10-31T23:59:59Z")
    assert points(r, "P1") == (5000, 0)  # 1000 + 4000
    assert rebate(r, "P1") == (0, 0)
    assert entries(r, "P1", source="s2") == [] and entries(r, "P1", source="c10") == []
    # AMBIGUOUS: events after --until are not counted anywhere
    assert r["events_applied"] == 3
    assert r["rejections"] == []


def test_without_until_every_event_applies():
    r = run(until_lines())
    assert points(r, "P1") == (7000, 0)  # 1000 + 2000 + 4000
    assert rebate(r, "P1") == (5_000, 0)  # October net 100000 + 400000 = 500000 -> 1%
    assert r["events_applied"] == 5


def test_replay_result_is_plain_json():
    r = run(until_lines())
    assert json.loads(json.dumps(r)) == r
