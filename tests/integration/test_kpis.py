"""The program KPIs on the real ClickHouse 18.16: a small worked program whose figures are written
out by hand below, exact after duplicate deliveries and after a second sink writing it all again;
the read-only user reads every view and cannot write; the report command prints them.

The log is folded by the replay's code and written through the sink's mappings
(processor/projection_load.py), so the rows are the ones the live pipeline writes.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import uuid

import pytest
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from processor import projection_load, simulation
from processor.codec import to_json_line
from processor.report import parse_period, report
from projections import kpi
from projections.migrate import client, migrate
from tests.kpi_worked import EXPECTED, WORKED

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scratch(clickhouse_settings):
    made = []

    def make():
        db = f"kpi_test_{uuid.uuid4().hex[:8]}"
        settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
        migrate(settings)
        made.append(settings)
        return settings
    yield make
    conn = client(clickhouse_settings, database="default")
    for settings in made:
        conn.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    conn.disconnect()


def kpis(settings, period: str) -> dict:
    conn = client(settings)
    try:
        doc = report(conn.execute, settings.clickhouse_database, parse_period(period))
    finally:
        conn.disconnect()
    doc["anomalies"].pop("open_now")          # ages run with the clock
    return doc


@pytest.fixture(scope="module")
def worked(scratch):
    settings = scratch()
    projection_load.load(settings, projection_load.project_lines(WORKED))
    return settings


def test_every_figure_written_out_in_tests_kpi_worked(worked):
    reports = {period: kpis(worked, period) for period in {p for p, _, _ in EXPECTED}}
    got = {(period, family, key): reports[period][family][key] for period, family, key in EXPECTED}
    assert got == EXPECTED


def test_participation_redemption_deals_completion_by_hand(worked):
    q1 = kpis(worked, "2026-Q1")
    p = q1["participation"]
    assert (p["enrolled_partners"], p["active_partners"], p["participation_rate"]) == (4, 4, 1.0)
    assert {r["segment"]: (r["enrolled_partners"], r["active_partners"]) for r in p["by_segment"]} == {
        "long_tail": (2, 2), "strategic": (2, 2)}
    march = kpis(worked, "2026-03")["participation"]
    # P4 is enrolled in March (offboarded on the 10th) but its only March event was refused
    assert (march["enrolled_partners"], march["active_partners"], march["participation_rate"]) == (4, 3, 0.75)
    assert kpis(worked, "2026-01")["participation"]["enrolled_partners"] == 2

    r = q1["redemption"]
    # awarded: P1 1,000 + 4,000 + 30,000; P2 500 + 500 + 49,500; P3 150 + 9,000; P4 200
    assert (r["points_awarded"], r["points_redeemed"], r["points_expired"]) == (94_850, 300, 0)
    assert r["redemption_rate"] == 0.0032        # 300 / 94,850
    assert (r["partners_redeeming"], r["share_of_partners_redeeming"]) == (1, 0.25)

    d = q1["deals"]
    assert (d["deals_registered"], d["deal_volume_cents"], d["deals_won"], d["deals_lost"], d["win_rate"]) == (
        2, 700_000, 1, 1, 0.5)

    c = q1["completion"]
    assert (c["active_partners"], c["trainings"], c["certifications"], c["marketing_activities"]) == (4, 2, 1, 1)
    assert (c["trainings_per_active_partner"], c["share_certified"]) == (0.5, 0.25)


def test_tiers_and_retention_by_hand(worked):
    t = kpis(worked, "2026-Q1")["tiers"]
    # P4 is offboarded at the end of Q1: not in the distribution
    assert t["at_end"] == {"registered": 1, "silver": 1, "gold": 1, "platinum": 0}
    assert (t["upgrades"], t["downgrades"]) == (2, 0)
    assert t["movements"] == [{"from": "registered", "to": "silver", "changes": 1, "partners": 1},
                              {"from": "registered", "to": "gold", "changes": 1, "partners": 1}]
    april = kpis(worked, "2026-04")
    assert april["tiers"]["at_start"] == {"registered": 1, "silver": 1, "gold": 1, "platinum": 0}
    # P2 was gold at the end of March, trained in April and is still gold
    ret = april["retention"]
    assert (ret["top_tier_at_start"], ret["retained"], ret["retention_rate"]) == (1, 1, 1.0)


def test_growth_cost_and_time_to_first_value_by_hand(worked):
    q1 = kpis(worked, "2026-Q1")
    g = q1["growth"]
    # P1 $1,000 + $1,500 + $30,000; P2 $500 + $100,000; P3 $6,000 (P1's repeat of O1 counts once)
    assert (g["net_sales_cents"], g["returns_cents"], g["previous_net_sales_cents"]) == (13_900_000, 50_000, 0)
    assert (g["growth_vs_previous"], g["growth_vs_year_ago"]) == (None, None)
    march = kpis(worked, "2026-03")["growth"]
    assert (march["net_sales_cents"], march["previous_net_sales_cents"], march["growth_vs_previous"]) == (
        13_650_000, 150_000, 90.0)

    c = q1["cost"]
    assert c["point_value_cents"] == 1
    # points: 94,850 awarded - 1,000 clawed back - 500 forfeited; rebates $900 + $3,015 + $60
    assert (c["points_cost_cents"], c["rebate_cents"], c["program_cost_cents"]) == (93_350, 397_500, 490_850)
    assert (c["baseline_net_sales_cents"], c["incremental_net_sales_cents"]) == (0, 13_900_000)
    assert c["cost_per_incremental_dollar"] == 0.0353     # 490,850 / 13,900,000

    ttfv = q1["time_to_first_value"]
    # days to first points: P1 1, P2 2, P3 1, P4 1
    assert (ttfv["partners_enrolled"], ttfv["partners_with_points"], ttfv["median_days"], ttfv["p90_days"]) == (
        4, 4, 1.0, 2.0)
    assert [(c["cohort"], c["partners_enrolled"], c["median_days"]) for c in ttfv["cohorts"]] == [
        ("2026-01", 2, 2.0), ("2026-02", 2, 1.0)]


def test_anomalies_by_hand(worked):
    a = kpis(worked, "2026-Q1")["anomalies"]
    assert {t["alert_type"]: (t["raised"], t["open"], t["confirmed"], t["held_points_raised"])
            for t in a["by_type"]} == {"duplicate_order": (1, 1, 0, 0), "self_dealing": (1, 0, 1, 500),
                                       "earning_cap_reached": (1, 1, 0, 0)}
    assert (a["raised"], a["held_points_forfeited"], a["points_forfeited"]) == (3, 500, 500)


def test_figures_unchanged_after_duplicate_deliveries_and_a_second_sink(scratch, worked):
    expected = {period: kpis(worked, period) for period in ("2026-01", "2026-03", "2026-Q1", "2026-04", "2026")}
    twice = scratch()
    rows = projection_load.project_lines(WORKED)
    projection_load.load(twice, rows, copies=2)          # every batch delivered twice
    projection_load.load(twice, rows)                    # a restarted sink writes (and rebuilds) it all again
    conn = client(twice)
    try:
        # the copies are really there, unmerged: only FINAL and the rebuild make them count once
        raw = conn.execute(f"SELECT count() FROM {twice.clickhouse_database}.ledger")[0][0]
        final = conn.execute(f"SELECT count() FROM {twice.clickhouse_database}.ledger FINAL")[0][0]
        assert raw >= 2 * final > 0
    finally:
        conn.disconnect()
    assert {period: kpis(twice, period) for period in expected} == expected


def test_rollup_rebuilt_from_scratch_equals_the_incremental_one(worked):
    """The sink rebuilds the partner-months of each batch; rebuilding every partner-month at once
    (what an operator does after changing the rollup's SQL) gives the same figures."""
    before = kpis(worked, "2026")
    conn = client(worked)
    try:
        kpi.rebuild(conn.execute, worked.clickhouse_database,
                    kpi.all_partner_months(conn.execute, worked.clickhouse_database))
    finally:
        conn.disconnect()
    assert kpis(worked, "2026") == before


def test_simulated_program_kpis_add_up_to_the_ledger(scratch):
    settings = scratch()
    lines = [to_json_line(ev) for ev in itertools.islice(simulation.simulate(seed=5, partners=25,
                                                                             minutes_per_event=45), 4000)]
    projection_load.load(settings, projection_load.project_lines(lines), copies=2)
    conn = client(settings)
    db = settings.clickhouse_database
    try:
        from_ledger = conn.execute(
            f"SELECT sumIf(delta_available + delta_held, kind IN ('earn', 'bonus', 'spiff')), "
            f"-sumIf(delta_available + delta_held, kind = 'redeem'), "
            f"sumIf(delta_available + delta_held, account = 'rebate' AND kind = 'rebate') "
            f"FROM {db}.ledger FINAL WHERE account = 'points' OR kind = 'rebate'")[0]
        from_views = conn.execute(
            f"SELECT sum(points_awarded), sum(points_redeemed) FROM {db}.kpi_redemption WHERE period_type = 'year'")[0]
        rebates = conn.execute(f"SELECT sum(rebate_cents) FROM {db}.kpi_cost WHERE period_type = 'month'")[0][0]
    finally:
        conn.disconnect()
    assert from_ledger[0] > 0 and from_ledger[1] > 0
    assert (from_views[0], from_views[1], rebates) == from_ledger


VIEWS = ("kpi_partner_month", "kpi_partners", "kpi_months", "kpi_partner_grid", "kpi_partner_periods",
         "kpi_tier_changes", "kpi_tier_month_end", "kpi_alerts", "kpi_participation", "kpi_redemption",
         "kpi_deals", "kpi_completion", "kpi_growth", "kpi_cost", "kpi_tier_distribution", "kpi_tier_movements",
         "kpi_retention", "kpi_time_to_first_value", "kpi_anomalies", "kpi_open_alerts", "program_settings")


def test_the_read_only_user_reads_every_view_and_cannot_write(worked):
    reader = Client(worked.clickhouse_host, port=worked.clickhouse_port, user="reader", password="reader",
                    database=worked.clickhouse_database)
    try:
        for view in VIEWS:
            reader.execute(f"SELECT * FROM {view} LIMIT 1")
        with pytest.raises(ch_errors.ServerException) as refused:
            reader.execute("INSERT INTO kpi_partner_month (partner_id, month, version) VALUES",
                           [("X", __import__("datetime").date(2026, 1, 1), 1)])
        assert refused.value.code == 164          # READONLY
    finally:
        reader.disconnect()


def test_report_command_prints_tables_and_json(worked):
    env = {**os.environ, **worked.as_env()}
    as_json = subprocess.run([sys.executable, "-m", "processor.cli.main", "report", "--period", "2026-Q1", "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert set(doc) >= {"participation", "redemption", "tiers", "retention", "growth", "deals",
                        "time_to_first_value", "completion", "cost", "anomalies"}
    assert doc["redemption"]["points_awarded"] == 94_850
    text = subprocess.run([sys.executable, "-m", "processor.cli.main", "report", "--period", "2026-Q1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "Participation" in text.stdout and "94,850" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "processor.cli.main", "report", "--period", "2026-13"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "2026-Q4" in bad.stderr
