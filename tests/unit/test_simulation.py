"""The simulator and its ground truth (processor/simulation.py), and the score (processor/scoring.py).

The truth is checked against the file replay (`processor.replay.replay_lines`, both stages, no
services): every planted anomaly must raise exactly the alert ids its record names, and the kinds
normal traffic never produces (copied orders, sales to partners, near-duplicates, large
adjustments) must raise nothing else. The score is checked with worked numbers.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter
from functools import cache

import pytest

from processor import scoring
from processor.domain.timeutil import parse_iso
from processor.replay import replay_lines
from processor.simulation import LogPosition, Simulation, start_after

ONLY_PLANTED = {"duplicate_order", "near_duplicate_order", "self_dealing", "large_adjustment"}


def run(n: int, prefix: str, start: str | int, seed: int = 7, **options) -> tuple[list[dict], list[dict]]:
    sim = Simulation(seed, 60, start, 12.0, prefix, **options)
    events = list(itertools.islice(sim.events(), n))
    return events, sim.truth


@cache
def long_run() -> tuple[list[dict], list[dict], dict]:
    """20,000 events over about 5.5 months: long enough for stuffing (3 full months of history)."""
    events, truth = run(20_000, "SIM-t", "2026-01-01T00:00:00Z", min_age_events=2_500)
    return events, truth, replay_lines(json.dumps(e) for e in events)


def ids_of(events: list[dict]) -> set[str]:
    """Every id of the events but the courses (the vendor's catalogue, the same for every partner)."""
    return {v for e in events for k, v in e.items()
            if k.endswith("_id") and k != "course_id" and isinstance(v, str) and v != "*"}


# ------------------------------------------------------------------------------------ the truth

def test_every_planted_anomaly_raises_exactly_the_alert_ids_of_its_truth_record():
    _, truth, doc = long_run()
    assert truth
    for record in truth:
        types = {scoring.alert_type_of(a) for a in record["alert_ids"]}
        partners = {a.split(":")[1] for a in record["alert_ids"]}
        raised = {a["alert_id"] for a in doc["alerts"] if a["trigger_event_id"] == record["trigger_event_id"]
                  and a["alert_type"] in types and a["partner_id"] in partners}
        assert raised == set(record["alert_ids"]), record


def test_every_kind_is_planted_and_every_alert_id_is_spelled_as_spec_5_says():
    events, truth, _ = long_run()
    assert set(Counter(r["kind"] for r in truth)) == {
        "duplicate_order", "duplicate_resend", "near_duplicate", "self_dealing", "velocity_burst",
        "large_adjustment", "channel_stuffing", "return_spike"}
    by_id = {e["event_id"]: e for e in events}
    for record in truth:
        trigger = by_id[record["trigger_event_id"]]
        for alert_id in record["alert_ids"]:
            alert_type, partner, trigger_id = alert_id.split(":")
            assert trigger_id == trigger["event_id"]
            assert partner == record["partner"] or alert_type == "duplicate_order"
        if record["kind"] in ("channel_stuffing", "return_spike"):
            assert trigger["event_type"] == "PeriodClosed"
        if record["kind"] == "duplicate_order":      # both claimants, the new claim as trigger
            owner = next(e["partner_id"] for e in events if e.get("order_id") == trigger["order_id"])
            assert record["alert_ids"] == [f"duplicate_order:{trigger['partner_id']}:{trigger['event_id']}",
                                           f"duplicate_order:{owner}:{trigger['event_id']}"]


def test_normal_traffic_never_raises_the_kinds_only_plants_raise():
    _, truth, doc = long_run()
    expected = scoring.expected_ids(truth)
    stray = [a["alert_id"] for a in doc["alerts"] if a["alert_type"] in ONLY_PLANTED and a["alert_id"] not in expected]
    assert stray == []


def test_the_replay_scores_full_recall_on_every_planted_type():
    events, truth, doc = long_run()
    rows = {r.alert_type: r for r in scoring.score(truth, [a["alert_id"] for a in doc["alerts"]], len(events))}
    for alert_type in scoring.PLANTED_TYPES:
        assert rows[alert_type].injected > 0, alert_type
        assert rows[alert_type].recall == 1.0, alert_type
    for alert_type in ONLY_PLANTED:
        assert rows[alert_type].precision == 1.0, alert_type


def test_the_run_is_valid_input_nothing_rejected_but_unaffordable_redemptions():
    _, _, doc = long_run()
    assert {r["reason"] for r in doc["rejections"]} <= {"insufficient_points"}


# ------------------------------------------------------------------------- runs on one log

def test_two_runs_with_different_run_ids_share_no_id():
    first, _ = run(3_000, "SIM-aaaa", "2026-01-01T00:00:00Z")
    second, _ = run(3_000, "SIM-bbbb", "2026-01-01T00:00:00Z")     # same seed: same program, other ids
    assert ids_of(first) & ids_of(second) == set()
    orders = {e["order_id"] for e in first if e["event_type"] == "SaleRecorded"}
    assert orders and not orders & {e["order_id"] for e in second if e["event_type"] == "SaleRecorded"}


def test_a_second_run_continues_the_log_without_false_duplicates_reenrolments_or_second_closes():
    first, truth1 = run(3_000, "SIM-one", "2026-01-20T00:00:00Z", min_age_events=500)
    latest = max(parse_iso(e["occurred_at"]) for e in first)
    closed = frozenset(e["period"] for e in first if e["event_type"] == "PeriodClosed")
    assert closed == {"2026-01"}
    second, truth2 = run(3_000, "SIM-two", start_after(LogPosition(latest, closed)), min_age_events=500,
                         closed_periods=closed)
    assert min(parse_iso(e["occurred_at"]) for e in second) > latest
    doc = replay_lines(json.dumps(e) for e in first + second)
    assert {r["reason"] for r in doc["rejections"]} <= {"insufficient_points"}
    duplicates = {a["alert_id"] for a in doc["alerts"] if a["alert_type"] == "duplicate_order"}
    assert duplicates == {a for a in scoring.expected_ids(truth1 + truth2) if a.startswith("duplicate_order:")}
    periods = [e["period"] for e in first + second if e["event_type"] == "PeriodClosed"]
    assert len(periods) == len(set(periods))


def test_the_clock_starts_at_the_given_time_and_runs_forward():
    events, _ = run(2_000, "SIM-c", "2026-05-07T13:00:00Z")
    times = [parse_iso(e["occurred_at"]) for e in events]
    assert times[0] == parse_iso("2026-05-07T13:00:00Z")
    assert times == sorted(times)


@pytest.mark.parametrize(("latest", "closed", "start"), [
    (None, set(), "2026-01-01T00:00:00Z"),                           # empty log: the default start
    ("2026-03-14T10:00:00Z", set(), "2026-03-14T10:01:00Z"),         # a minute after the latest event
    ("2026-03-14T10:00:00Z", {"2026-02"}, "2026-03-14T10:01:00Z"),   # March is still open
    ("2026-03-14T10:00:00Z", {"2026-03"}, "2026-04-01T00:00:00Z"),   # March is closed: April
    ("2026-03-14T10:00:00Z", {"2026-05", "2026-01"}, "2026-06-01T00:00:00Z"),
])
def test_a_run_starts_after_the_latest_event_and_never_in_a_closed_month(latest, closed, start):
    position = LogPosition(parse_iso(latest) if latest else None, frozenset(closed))
    assert start_after(position) == parse_iso(start)


def test_log_positions_merge_to_the_latest_time_and_every_closed_period():
    a = LogPosition(parse_iso("2026-03-01T00:00:00Z"), frozenset({"2026-01"}))
    b = LogPosition(parse_iso("2026-02-01T00:00:00Z"), frozenset({"2026-02"}))
    assert a.merge(b) == LogPosition(parse_iso("2026-03-01T00:00:00Z"), frozenset({"2026-01", "2026-02"}))
    assert LogPosition().merge(b) == b


def test_a_closed_period_is_not_closed_again():
    events, _ = run(1_000, "SIM-d", "2026-01-28T00:00:00Z", closed_periods={"2026-01"})
    assert "2026-01" not in {e.get("period") for e in events}
    assert any(e["occurred_at"] >= "2026-02" for e in events)


# ------------------------------------------------------------------------------------ the score

TRUTH = [
    {"kind": "run", "run_id": "r1", "prefix": "SIM-r1"},
    {"kind": "duplicate_order", "alert_ids": ["duplicate_order:A:e1", "duplicate_order:B:e1"]},
    {"kind": "near_duplicate", "alert_ids": ["near_duplicate_order:A:e2"]},
    {"kind": "velocity_burst", "alert_ids": ["velocity_spike:C:e3"]},
    {"kind": "run_end", "events": 4000},
]
RAISED = ["duplicate_order:A:e1", "duplicate_order:B:e1", "velocity_spike:C:e4", "velocity_spike:C:e3",
          "deal_conflict:D:e5", "deal_conflict:E:e6"]


def test_score_worked_example():
    rows = {r.alert_type: r for r in scoring.score(TRUTH, RAISED, 4_000)}
    dup, near, velocity, conflict, stuffing, total = (rows[t] for t in (
        "duplicate_order", "near_duplicate_order", "velocity_spike", "deal_conflict", "channel_stuffing", "all"))
    # duplicate_order: both claimants planted and raised, 2 alerts in 4,000 events = 0.5 per 1,000
    assert (dup.injected, dup.raised, dup.true_positives, dup.precision, dup.recall) == (2, 2, 2, 1.0, 1.0)
    assert dup.per_1000_events == 0.5
    # near_duplicate_order: planted once, never raised: recall 0, no precision (nothing raised)
    assert (near.injected, near.raised, near.missed, near.precision, near.recall) == (1, 0, 1, None, 0.0)
    # velocity_spike: one right, one on the wrong trigger: precision 1/2, recall 1/1
    assert (velocity.raised, velocity.true_positives, velocity.false_positives) == (2, 1, 1)
    assert (velocity.precision, velocity.recall) == (0.5, 1.0)
    # deal_conflict is not planted: no precision or recall, only the workload (2 / 4,000 x 1,000)
    assert (conflict.planted, conflict.precision, conflict.recall, conflict.per_1000_events) == (False, None, None, 0.5)
    # a planted type that neither was planted this run nor raised: all zero, no ratios
    assert (stuffing.injected, stuffing.raised, stuffing.precision, stuffing.recall) == (0, 0, None, None)
    # all: 4 planted ids, 6 raised, 3 matched: precision 3/6, recall 3/4, 6 / 4,000 x 1,000 = 1.5
    assert (total.injected, total.raised, total.true_positives) == (4, 6, 3)
    assert (total.precision, total.recall, total.per_1000_events) == (0.5, 0.75, 1.5)


def test_score_lists_every_spec_type_in_order_then_all():
    rows = scoring.score(TRUTH, RAISED, 4_000)
    assert [r.alert_type for r in rows] == [*scoring.ALERT_TYPES, "all"]


def test_score_table_and_document():
    rows = scoring.score(TRUTH, RAISED, 4_000)
    table = scoring.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["alert", "type", "injected"]
    velocity = next(line for line in lines if line.startswith("velocity_spike"))
    assert velocity.split() == ["velocity_spike", "1", "2", "1", "1", "0", "50.0%", "100.0%", "0.50"]
    assert "not planted" in next(line for line in lines if line.startswith("deal_conflict"))
    doc = scoring.document(rows, run_id="r1", events=4_000)
    assert doc["run_id"] == "r1" and doc["all"]["recall"] == 0.75
    assert doc["types"]["near_duplicate_order"] == {
        "injected": 1, "raised": 0, "true_positives": 0, "false_positives": 0, "missed": 1, "precision": None,
        "recall": 0.0, "alerts_per_1000_events": 0.0, "planted": True}


def test_truth_files_are_read_as_json_lines():
    text = "\n".join(json.dumps(r) for r in TRUTH) + "\n\n"
    assert scoring.read_truth(text.splitlines()) == TRUTH
    assert scoring.expected_ids(TRUTH) == {"duplicate_order:A:e1", "duplicate_order:B:e1",
                                           "near_duplicate_order:A:e2", "velocity_spike:C:e3"}
