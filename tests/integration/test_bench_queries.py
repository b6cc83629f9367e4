"""`incentives bench --what queries` at a tiny size on the real local ClickHouse (18.16): every KPI
view and dashboard panel is timed, and the rollup built from the synthetic history (which holds
duplicate copies, as the at-least-once sink leaves them) agrees with direct FINAL queries."""
from __future__ import annotations

import json
import uuid

import pytest

from processor import bench_queries as bq
from processor.bench import summary, to_json
from projections.migrate import client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(clickhouse_settings):
    db = f"bench_queries_test{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    report = bq.run_queries(clickhouse_settings, ledger_rows=20_000, event_rows=10_000, partners=50, months=6,
                            runs=1, keep=True, database=db, echo=lines.append)
    conn = client(clickhouse_settings, database=db)
    try:
        yield report, conn, db, lines
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


def test_every_kpi_view_and_panel_is_timed(run):
    report, _, _, lines = run
    by_name = {t.name: t for t in report.timings}
    for view in bq.KPI_VIEWS:
        names = [view] if view in bq.UNPERIODED_VIEWS else [f"{view} ({p})" for p in bq.PERIOD_TYPES]
        for name in names:
            timing = by_name[name]
            assert timing.error is None, (name, timing.error)
            assert len(timing.seconds) == 1 and timing.median is not None and timing.median > 0
            assert timing.result_rows is not None and timing.result_rows > 0, name
            assert timing.rows_read is not None and timing.rows_read > 0, name
    panels = [t for t in report.timings if t.kind == "panel"]
    assert len(panels) == len(bq.dashboard_queries(bq.DASHBOARD_DIR, bq.Macros(*bq.history_window(6), {})))
    assert [(t.name, t.error) for t in panels if t.error] == []
    reference = by_name["reference: ledger FINAL per partner"]
    assert reference.result_rows == 50 and reference.rows_read >= 20_000

    doc = json.loads(to_json(summary([report])))["queries"]
    assert len(doc["queries"]) == len(report.timings) and "over_1s" in doc
    assert doc["figures"]["rollup: rebuild all"]["events"] == report.facts["rollup_rows"]
    table = bq.format_report(report)
    assert "kpi_cost (quarter)" in table and "over 1 s:" in table
    assert any("building the KPI rollup" in line for line in lines)


def test_duplicates_were_loaded_and_counted_once(run):
    report, conn, db, _ = run
    assert report.facts["ledger_duplicate_copies"] > 0 and report.facts["events_duplicate_copies"] > 0
    assert conn.execute(f"SELECT count() FROM {db}.ledger FINAL")[0][0] == 20_000
    assert conn.execute(f"SELECT uniqExact(partner_id, event_id) FROM {db}.events")[0][0] == 10_000 + len(
        conn.execute(f"SELECT event_id FROM {db}.events WHERE event_type = 'PartnerOffboarded' GROUP BY event_id"))

    rollup = conn.execute(f"SELECT sum(points_redeemed), sum(points_earned), sum(rebate_cents), sum(trainings), "
                          f"sum(deals_registered) FROM {db}.kpi_partner_month FINAL")[0]
    ledger = conn.execute(f"""
        SELECT -sumIf(delta_available + delta_held, account = 'points' AND kind = 'redeem'),
               sumIf(delta_available + delta_held, account = 'points' AND kind = 'earn'),
               sumIf(delta_available + delta_held, account = 'rebate' AND kind = 'rebate')
        FROM {db}.ledger FINAL""")[0]
    events = conn.execute(f"""
        SELECT countIf(event_type = 'TrainingCompleted'), countIf(event_type = 'DealRegistered')
        FROM {db}.events FINAL
        WHERE (partner_id, event_id) NOT IN (SELECT partner_id, event_id FROM {db}.rejections)""")[0]
    assert rollup[0] > 0 and rollup[1] > 0 and rollup[3] > 0
    assert tuple(rollup) == tuple(ledger) + tuple(events)


def test_the_scratch_database_is_dropped_unless_kept(clickhouse_settings):
    db = f"bench_queries_test{uuid.uuid4().hex[:8]}"
    report = bq.run_queries(clickhouse_settings, ledger_rows=2_000, event_rows=500, partners=20, months=2, runs=1,
                            database=db, dashboards=None)
    assert report.facts["database"] == db and [t.kind for t in report.timings].count("panel") == 0
    conn = client(clickhouse_settings, database="default")
    try:
        assert conn.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db})[0][0] == 0
    finally:
        conn.disconnect()


def test_the_command_prints_one_json_line(clickhouse_settings):
    from click.testing import CliRunner

    from processor.cli.main import main

    env = {"INCENTIVES_CLICKHOUSE_HOST": clickhouse_settings.clickhouse_host,
           "INCENTIVES_CLICKHOUSE_PORT": str(clickhouse_settings.clickhouse_port),
           "INCENTIVES_CLICKHOUSE_HTTP_PORT": str(clickhouse_settings.clickhouse_http_port),
           "INCENTIVES_HOME": str(clickhouse_settings.home)}
    result = CliRunner().invoke(main, ["bench", "--what", "queries", "--ledger-rows", "2000", "--events", "500",
                                       "--partners", "20", "--months", "2", "--runs", "1", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])["queries"]
    assert doc["partners"] == 20 and doc["ledger_rows"] == 2_000 and doc["event_rows"] == 500
    assert {q["name"] for q in doc["queries"]} >= {"kpi_cost (month)", "kpi_open_alerts"}
    assert doc["database"].startswith("bench_queries_")
