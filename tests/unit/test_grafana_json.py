"""Static checks of the provisioned Grafana dashboards (deploy/grafana/dashboards/*.json), no services.

Every dashboard parses, has a uid and a title, unique panel ids, and reads only the ClickHouse data source
`clickhouse` through SQL targets of the ClickHouse plugin. Every panel and variable query names only the
KPI views and tables (the partner drill-down may also read balances, alerts_current and the ledger, the
ledger only for one partner), and parses on current ClickHouse (chdb), where it also runs against the
migrated, empty schema. tests/integration/test_grafana_dashboards.py runs the same queries on real data
on the local ClickHouse 18.16 as the read-only user.

The helpers here (loading, macro substitution, the relations a query names) are shared with that test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "deploy/grafana/dashboards"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}

OVERVIEW = "program-overview"
DRILLDOWN = "partner-drilldown"
FRAUD = "fraud"
EXPECTED_DASHBOARDS = {OVERVIEW, DRILLDOWN, FRAUD}

# What a panel may read: the KPI views and tables of projections/sql/013 and 014 ...
KPI_RELATIONS = frozenset({
    "kpi_participation", "kpi_redemption", "kpi_deals", "kpi_completion", "kpi_growth", "kpi_cost",
    "kpi_tier_distribution", "kpi_tier_movements", "kpi_retention", "kpi_time_to_first_value",
    "kpi_anomalies", "kpi_open_alerts",
    "kpi_partner_month", "kpi_partners", "kpi_months", "kpi_partner_grid", "kpi_partner_periods",
    "kpi_tier_changes", "kpi_tier_month_end", "kpi_alerts",
})
# ... and, in the partner drill-down only, the older per-partner objects (never the events table).
DRILLDOWN_RELATIONS = frozenset({"balances", "alerts_current", "ledger"})
# The ledger is big: a panel reads it for the chosen partner only (its sorting key is (partner_id, seq)).
LEDGER_READ = re.compile(r"\bFROM\s+ledger\s+FINAL\s+WHERE\s+partner_id\s*=\s*'\$\{partner\}'", re.IGNORECASE)

PERIOD_TYPES = ("month", "quarter", "year")
# What the plugin's macros would expand to for a fixed range (its $__fromTime is toDateTime(<unix seconds>)).
FROM_TIME = "toDateTime('2025-01-01 00:00:00', 'UTC')"
TO_TIME = "toDateTime('2026-12-31 23:59:59', 'UTC')"
FROM_DATE = "toDate('2025-01-01')"
TO_DATE = "toDate('2026-12-31')"

_RELATION = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_.]*)", re.IGNORECASE)
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_MACRO_CALL = {"timeFilter": (FROM_TIME, TO_TIME), "dateFilter": (FROM_DATE, TO_DATE)}


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON by file name without .json."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including the panels of collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def variable_sql(variable: dict[str, Any]) -> str:
    """A query variable's SQL (saved as a plain string, or as the plugin's object with rawSql)."""
    query = variable.get("query")
    return query if isinstance(query, str) else (query or {}).get("rawSql", "")


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, rawSql) of every panel target and every query variable."""
    out = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            out.append((f"panel {panel['id']} {panel.get('title', '')!r} {target.get('refId')}", target["rawSql"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            out.append((f"variable {variable['name']}", variable_sql(variable)))
    return out


def substitute(sql: str, *, period_type: str = "month", partner: str = "SIM-P000") -> str:
    """The query as the plugin would send it for a fixed time range: dashboard variables and macros replaced."""
    for name, value in (("period_type", period_type), ("partner", partner)):
        sql = sql.replace("${" + name + "}", value)
        sql = re.sub(r"\$" + name + r"\b", value, sql)
    for macro, (low, high) in _MACRO_CALL.items():
        sql = re.sub(r"\$__" + macro + r"\(\s*([^)]+?)\s*\)",
                     lambda m, lo=low, hi=high: f"{m.group(1)} >= {lo} AND {m.group(1)} <= {hi}", sql)
    sql = sql.replace("$__fromTime", FROM_TIME).replace("$__toTime", TO_TIME)
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unknown variable or macro {leftover} in {sql}"
    return sql


def relations(sql: str) -> set[str]:
    """Names after FROM / JOIN (subqueries, which start with '(', are not names)."""
    return {m.group(1) for m in _RELATION.finditer(_STRING_LITERAL.sub("''", sql))}


def allowed_relations(dashboard_name: str) -> frozenset[str]:
    return KPI_RELATIONS | DRILLDOWN_RELATIONS if dashboard_name == DRILLDOWN else KPI_RELATIONS


# ------------------------------------------------------------------------------------------------ the files


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


def test_the_three_dashboards_exist_and_parse(dashboards):
    assert set(dashboards) == EXPECTED_DASHBOARDS
    uids = [d.get("uid") for d in dashboards.values()]
    assert all(isinstance(uid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids), uids
    assert len(set(uids)) == len(uids), uids
    for name, dashboard in dashboards.items():
        assert isinstance(dashboard.get("title"), str) and dashboard["title"].strip(), name
        assert "id" not in dashboard or dashboard["id"] is None, f"{name}: a provisioned dashboard has no fixed id"
        assert isinstance(dashboard.get("schemaVersion"), int), name
        assert dashboard.get("time", {}).get("from") and dashboard["time"].get("to"), name


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboards):
    for name, dashboard in dashboards.items():
        panels = list(iter_panels(dashboard))
        assert panels, name
        ids = [p.get("id") for p in panels]
        assert all(isinstance(i, int) for i in ids), name
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids {ids}"
        cells: dict[tuple[int, int], str] = {}
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, f"{name}: {panel['title']}"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = panel["title"]


def test_every_query_uses_the_clickhouse_data_source(dashboards):
    for name, dashboard in dashboards.items():
        for panel in iter_panels(dashboard):
            if panel["type"] == "row":
                assert not panel.get("targets"), f"{name}: row {panel['title']!r} has targets"
                continue
            where = f"{name}: panel {panel['title']!r}"
            assert panel.get("datasource") == DATASOURCE, where
            assert panel.get("targets"), where
            for target in panel["targets"]:
                assert target.get("datasource") == DATASOURCE, where
                assert target.get("editorType") == "sql" and target.get("queryType") == "sql", where
                # the plugin's (and sqlds') format: 0 time series, 1 table
                assert target.get("format") in (0, 1), where
                assert isinstance(target.get("rawSql"), str) and target["rawSql"].strip(), where
                assert ";" not in target["rawSql"], f"{where}: one statement per target"
                if panel["type"] == "timeseries":
                    assert target["format"] == 0, f"{where}: a time series panel needs format 0"
                    assert re.search(r"\bAS time\b", target["rawSql"]), f"{where}: no time column"
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                assert variable.get("datasource") == DATASOURCE, f"{name}: variable {variable['name']}"


def test_variables(dashboards):
    def variables(name: str) -> dict[str, dict]:
        return {v["name"]: v for v in dashboards[name].get("templating", {}).get("list", [])}

    for name in (OVERVIEW, FRAUD):
        period = variables(name)["period_type"]
        assert period["type"] == "custom" and period["query"] == "month,quarter,year", name
        assert [o["value"] for o in period["options"]] == list(PERIOD_TYPES), name
        assert period["current"]["value"] == "month" and not period.get("multi") and not period.get("includeAll")
    partner = variables(DRILLDOWN)["partner"]
    assert partner["type"] == "query"
    assert variable_sql(partner) == "SELECT partner_id FROM kpi_partners ORDER BY partner_id"
    assert not partner.get("multi") and not partner.get("includeAll")
    # every variable a query uses is defined on its dashboard
    for name, dashboard in dashboards.items():
        defined = set(variables(name))
        for label, sql in dashboard_queries(dashboard):
            used = set(re.findall(r"\$\{(\w+)\}", sql)) | {v for v in re.findall(r"\$(\w+)", sql)
                                                             if not v.startswith("__")}
            assert used <= defined, f"{name} {label}: undefined {used - defined}"


def test_links_open_existing_dashboards(dashboards):
    uids = {d["uid"] for d in dashboards.values()}
    text = json.dumps(dashboards)
    linked = set(re.findall(r"/d/([A-Za-z0-9_-]+)", text))
    assert linked, "the open alerts table links to the partner drill-down"
    assert linked <= uids, linked - uids
    for uid in linked:
        variables = {v["name"] for d in dashboards.values() if d["uid"] == uid for v in d["templating"]["list"]}
        for var in re.findall(rf"/d/{uid}\?[^\"]*?var-(\w+)=", text):
            assert var in variables, f"link to {uid} sets unknown variable {var}"


def test_queries_read_only_the_kpi_views(dashboards):
    for name, dashboard in dashboards.items():
        allowed = allowed_relations(name)
        for label, sql in dashboard_queries(dashboard):
            named = relations(sql)
            assert named, f"{name} {label}: no FROM"
            assert named <= allowed, f"{name} {label}: reads {sorted(named - allowed)}"
            if "ledger" in named:
                assert len(re.findall(r"\bledger\b", sql)) == len(LEDGER_READ.findall(sql)), (
                    f"{name} {label}: the ledger is read only as FROM ledger FINAL WHERE partner_id = '${{partner}}'")
                assert re.search(r"\bLIMIT\s+\d+\s*$|\bGROUP BY\b", sql), (
                    f"{name} {label}: ledger entries need a LIMIT (or are summed)")


def test_relation_parser():
    sql = ("SELECT a FROM kpi_x FINAL ANY LEFT JOIN (SELECT b FROM kpi_y) AS r USING (a) "
           "JOIN db.z ON 1 WHERE s = 'FROM events'")
    assert relations(sql) == {"kpi_x", "kpi_y", "db.z"}


def test_substitution():
    sql = ("SELECT 1 FROM t WHERE p = '${period_type}' AND q = '$partner' AND $__timeFilter(raised_at) "
           "AND $__dateFilter(month) AND d >= toDate($__fromTime) AND d <= toDate($__toTime)")
    out = substitute(sql, period_type="quarter", partner="P1")
    assert "p = 'quarter'" in out and "q = 'P1'" in out
    assert f"raised_at >= {FROM_TIME} AND raised_at <= {TO_TIME}" in out
    assert f"month >= {FROM_DATE} AND month <= {TO_DATE}" in out
    assert f"d >= toDate({FROM_TIME}) AND d <= toDate({TO_TIME})" in out
    with pytest.raises(AssertionError):
        substitute("SELECT $__interval_s")


def test_overview_covers_the_program_kpis(dashboards):
    read = {rel for _, sql in dashboard_queries(dashboards[OVERVIEW]) for rel in relations(sql)}
    assert {"kpi_participation", "kpi_redemption", "kpi_tier_distribution", "kpi_tier_movements", "kpi_retention",
            "kpi_growth", "kpi_deals", "kpi_time_to_first_value", "kpi_completion", "kpi_cost"} <= read
    fraud_read = {rel for _, sql in dashboard_queries(dashboards[FRAUD]) for rel in relations(sql)}
    assert {"kpi_anomalies", "kpi_open_alerts"} <= fraud_read
    drill_read = {rel for _, sql in dashboard_queries(dashboards[DRILLDOWN]) for rel in relations(sql)}
    assert {"kpi_tier_changes", "kpi_partner_grid", "kpi_alerts", "ledger", "kpi_partners"} <= drill_read


def test_rates_are_computed_from_sums(dashboards):
    """A rate is sum(x) / sum(y), never an average of rates."""
    for name, dashboard in dashboards.items():
        for label, sql in dashboard_queries(dashboard):
            assert not re.search(r"\b(avg|avgIf|median|quantile)\s*\(", sql, re.IGNORECASE), f"{name} {label}"


# ------------------------------------------------------------------------------- on current ClickHouse (chdb)

CHDB_DB = "grafana_unit"


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory):
    chdb_session_module = pytest.importorskip("chdb.session")
    from projections import migrate as mig

    session = chdb_session_module.Session(str(tmp_path_factory.mktemp("chdb-grafana")))

    def query(sql: str) -> list:
        out = session.query(sql, "JSONCompact").bytes()
        return json.loads(out)["data"] if out else []

    session.query(f"CREATE DATABASE IF NOT EXISTS {CHDB_DB}")
    session.query(mig.render(mig.SCHEMA_MIGRATIONS_DDL, CHDB_DB))
    for migration in mig.load_migrations():
        mig.apply_steps(migration.steps(CHDB_DB), query)
    session.query(f"USE {CHDB_DB}")
    yield session
    session.close()


def test_every_query_parses_on_current_clickhouse(chdb_session, dashboards):
    checked = 0
    for name, dashboard in dashboards.items():
        for label, sql in dashboard_queries(dashboard):
            for period_type in PERIOD_TYPES:
                try:
                    chdb_session.query("EXPLAIN SYNTAX " + substitute(sql, period_type=period_type), "TSV")
                except Exception as e:  # chdb raises its own error type
                    pytest.fail(f"{name} {label} ({period_type}) does not parse: {e}\n{sql}")
                checked += 1
    assert checked >= 3 * 30


def test_every_query_runs_on_the_empty_schema_on_current_clickhouse(chdb_session, dashboards):
    """Names and types resolve on current ClickHouse (the compose stack runs 24.8), not just the syntax."""
    for name, dashboard in dashboards.items():
        for label, sql in dashboard_queries(dashboard):
            try:
                chdb_session.query(substitute(sql, period_type="quarter"), "JSONCompact")
            except Exception as e:
                pytest.fail(f"{name} {label} fails on current ClickHouse: {e}\n{sql}")


def test_no_alias_shadows_a_column(chdb_session, dashboards):
    """`sum(x) AS x` makes every other `x` of the query mean the aggregate (ClickHouse resolves aliases
    everywhere): `sum(x) / sum(y)` then nests aggregates, or silently differs between server versions."""
    columns: dict[str, set[str]] = {}
    for relation in sorted(KPI_RELATIONS | DRILLDOWN_RELATIONS):
        out = chdb_session.query(f"DESCRIBE TABLE {relation}", "JSONCompact").bytes()
        columns[relation] = {row[0] for row in json.loads(out)["data"]}
    for name, dashboard in dashboards.items():
        for label, sql in dashboard_queries(dashboard):
            read = set().union(*(columns[r] for r in relations(sql)))
            for m in re.finditer(r"(\S+)\s+AS\s+(\w+)", sql):
                expression, alias = m.group(1), m.group(2)
                assert alias not in read or expression == alias, f"{name} {label}: alias {alias!r} is a column"
