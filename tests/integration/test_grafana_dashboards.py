"""The Grafana dashboards' queries on real data, on the local ClickHouse 18.16, as the read-only user.

A realistic simulated log (30 partners, 6,000 events over about eight months) is projected and loaded into a
database of its own (dropped at the end), the KPI rollup rebuilt as the sink does. Then every panel query and
every variable query of deploy/grafana/dashboards/*.json runs with the plugin's macros and the dashboard
variables substituted (tests/unit/test_grafana_json.py), for each period type, as `reader` (readonly=1 in
deploy/clickhouse/users.xml.tmpl, like the compose stack's `grafana` user): each returns without error, the
program overview's panels return rows, every query names only the allowed views, and `reader` cannot write.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from processor import projection_load, simulation
from processor.codec import to_json_line
from projections.migrate import client, migrate
from tests.unit.test_grafana_json import (
    DRILLDOWN,
    EXPECTED_DASHBOARDS,
    OVERVIEW,
    PERIOD_TYPES,
    allowed_relations,
    dashboard_queries,
    iter_panels,
    load_dashboards,
    relations,
    substitute,
)

pytestmark = pytest.mark.integration

READER, READER_PASSWORD = "reader", "reader"     # deploy/clickhouse/users.xml.tmpl: profile readonly (readonly=1)
READONLY_CODE = 164                               # 18.16: "Cannot execute query in readonly mode"
SLOW_QUERY_SECONDS = 10.0
# Overview panels that are rightly empty for this log: the simulated program starts in January 2026, so no
# partner is gold or platinum at the end of the year before its first year.
EMPTY_BY_DESIGN = {("Retention of top-tier partners", "year")}


@pytest.fixture(scope="module")
def settings(clickhouse_settings) -> Iterator[Any]:
    db = f"grafana_test_{uuid.uuid4().hex[:8]}"
    test_settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
    migrate(test_settings)
    lines = [to_json_line(e)
             for e in itertools.islice(simulation.simulate(seed=3, partners=30, minutes_per_event=60), 6000)]
    rows = projection_load.project_lines(lines)
    projection_load.load(test_settings, rows)
    yield test_settings
    conn = client(test_settings, database="default")
    conn.execute(f"DROP DATABASE IF EXISTS {db}")
    conn.disconnect()


@pytest.fixture(scope="module")
def reader(settings) -> Iterator[Client]:
    conn = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=READER, password=READER_PASSWORD,
                  database=settings.clickhouse_database, send_receive_timeout=60, connect_timeout=5)
    yield conn
    conn.disconnect()


@pytest.fixture(scope="module")
def partner(reader) -> str:
    """A partner with ledger entries, tier changes and alerts if there is one, so the drill-down shows data."""
    rows = reader.execute(
        "SELECT partner_id, count() AS alerts FROM kpi_alerts"
        " WHERE partner_id IN (SELECT partner_id FROM kpi_tier_changes)"
        " GROUP BY partner_id ORDER BY alerts DESC, partner_id LIMIT 1")
    rows = rows or reader.execute("SELECT partner_id FROM kpi_partners ORDER BY partner_id LIMIT 1")
    assert rows, "no partner in kpi_partners"
    return str(rows[0][0])


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    boards = load_dashboards()
    assert set(boards) == EXPECTED_DASHBOARDS
    return boards


def _run(reader: Client, sql: str) -> tuple[list[tuple], float]:
    started = time.monotonic()
    rows = reader.execute(sql)
    return rows, time.monotonic() - started


def test_the_log_fills_the_kpi_views(reader):
    counts = {view: reader.execute(f"SELECT count() FROM {view}")[0][0]
              for view in ("kpi_partner_month FINAL", "kpi_partners", "ledger FINAL", "kpi_tier_changes",
                           "kpi_alerts", "kpi_open_alerts")}
    assert counts["kpi_partners"] == 30, counts
    assert all(n > 0 for n in counts.values()), counts


def test_every_query_runs_as_the_read_only_user(reader, dashboards, partner):
    ran, slow = 0, []
    for name, dashboard in dashboards.items():
        for label, raw_sql in dashboard_queries(dashboard):
            period_types = PERIOD_TYPES if "period_type" in raw_sql else ("month",)
            for period_type in period_types:
                sql = substitute(raw_sql, period_type=period_type, partner=partner)
                try:
                    _, seconds = _run(reader, sql)
                except ch_errors.Error as e:
                    pytest.fail(f"{name} {label} ({period_type}) fails on ClickHouse 18.16 as {READER}: "
                                f"{str(e).splitlines()[0]}\n{sql}")
                ran += 1
                if seconds > SLOW_QUERY_SECONDS:
                    slow.append(f"{name} {label} ({period_type}): {seconds:.1f} s")
    assert ran >= 60
    assert not slow, slow


def test_program_overview_panels_show_data(reader, dashboards):
    """With eight months of a program every overview panel has something to show, at every period length
    (the tables of tier movements and the cohorts included)."""
    empty = set()
    for panel in iter_panels(dashboards[OVERVIEW]):
        for target in panel.get("targets") or []:
            for period_type in PERIOD_TYPES:
                rows, _ = _run(reader, substitute(target["rawSql"], period_type=period_type))
                if not rows:
                    empty.add((panel["title"], period_type))
    assert empty == EMPTY_BY_DESIGN, f"panels without rows: {sorted(empty - EMPTY_BY_DESIGN)}"


def test_program_overview_rates_are_plausible(reader, dashboards):
    """Rates computed from sums stay within [0, 1] and the participation panel counts every partner."""
    panels = {p["title"]: p for p in iter_panels(dashboards[OVERVIEW])}
    sql = substitute(panels["Participation rate"]["targets"][0]["rawSql"], period_type="year")
    rows = reader.execute(sql)
    assert len(rows) == 1, rows                     # 2026 only
    _, enrolled, active, rate = rows[0]
    assert enrolled == 30 and 0 < active <= enrolled and rate == pytest.approx(active / enrolled)
    for title in ("Redemption rate", "Retention of top-tier partners", "Share of active partners completing"):
        sql = substitute(panels[title]["targets"][0]["rawSql"], period_type="month")
        data, columns = reader.execute(sql, with_column_types=True)
        rate_columns = [i for i, (column, _) in enumerate(columns) if "rate" in column or "share" in column]
        assert rate_columns, title
        for row in data:
            for i in rate_columns:
                assert row[i] is None or 0 <= row[i] <= 1, (title, columns[i][0], row)


def test_partner_drilldown_shows_the_partner(reader, dashboards, partner):
    panels = {p["title"]: p for p in iter_panels(dashboards[DRILLDOWN])}
    for title in ("Partner", "Tier now", "Balances", "Monthly figures", "Latest ledger entries"):
        rows = reader.execute(substitute(panels[title]["targets"][0]["rawSql"], partner=partner))
        assert rows, f"{title}: no rows for {partner}"
    ledger = reader.execute(substitute(panels["Latest ledger entries"]["targets"][0]["rawSql"], partner=partner))
    assert 0 < len(ledger) <= 50
    seqs = [row[0] for row in ledger]
    assert seqs == sorted(seqs, reverse=True)
    # the variable lists every partner
    (variable,) = [v for v in dashboards[DRILLDOWN]["templating"]["list"] if v["name"] == "partner"]
    options = [row[0] for row in reader.execute(variable["query"])]
    assert len(options) == 30 and partner in options and options == sorted(options)


def test_queries_name_only_the_allowed_views(dashboards):
    for name, dashboard in dashboards.items():
        allowed = allowed_relations(name)
        for label, sql in dashboard_queries(dashboard):
            assert relations(sql) <= allowed, f"{name} {label}: {sorted(relations(sql) - allowed)}"


def test_the_reader_cannot_write(reader, settings):
    with pytest.raises(ch_errors.ServerException) as err:
        reader.execute("INSERT INTO kpi_partner_month (partner_id, month, version) VALUES",
                       [("GRAFANA-WRITE", date(2026, 1, 1), 1)])
    assert err.value.code == READONLY_CODE
    for statement in ("DROP TABLE kpi_partner_month", "ALTER TABLE kpi_partner_month DELETE WHERE 1",
                      "CREATE TABLE grafana_x (x UInt8) ENGINE = Memory"):
        with pytest.raises(ch_errors.ServerException) as err:
            reader.execute(statement)
        assert err.value.code == READONLY_CODE, statement
    admin = client(settings)
    try:
        assert admin.execute("SELECT count() FROM kpi_partner_month WHERE partner_id = 'GRAFANA-WRITE'") == [(0,)]
        assert admin.execute("EXISTS TABLE kpi_partner_month") == [(1,)]
    finally:
        admin.disconnect()
