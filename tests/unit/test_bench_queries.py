"""`incentives bench --what queries`: the pure parts (Grafana macros, panel queries, the table),
and the synthetic history's SQL on current ClickHouse (chdb) at a tiny size."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from processor import bench_queries as bq

START = datetime(2023, 12, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
MACROS = bq.Macros(START, END, {"partner": "P00001", "period_type": "month"})


# ------------------------------------------------------------------------------------- macros

def test_time_macros_become_datetime_literals_of_the_range() -> None:
    sql = "SELECT * FROM kpi_x WHERE period_start >= toDate($__fromTime) AND period_start <= toDate($__toTime)"
    assert bq.substitute_macros(sql, MACROS) == (
        "SELECT * FROM kpi_x WHERE period_start >= toDate(toDateTime(1701388800)) "
        "AND period_start <= toDate(toDateTime(1796083200))")
    assert int(START.timestamp()) == 1701388800 and int(END.timestamp()) == 1796083200


def test_time_filters_and_epoch_macros() -> None:
    out = bq.substitute_macros("WHERE $__timeFilter(raised_at) AND $__dateFilter( month ) AND x < $__to", MACROS)
    assert out == ("WHERE raised_at >= toDateTime(1701388800) AND raised_at <= toDateTime(1796083200) "
                   "AND month >= toDate('2023-12-01') AND month <= toDate('2026-12-01') AND x < 1796083200000")


def test_variables_are_quoted_unless_the_sql_quotes_them() -> None:
    assert bq.substitute_macros("WHERE partner_id = '${partner}'", MACROS) == "WHERE partner_id = 'P00001'"
    assert bq.substitute_macros("WHERE partner_id = '$partner'", MACROS) == "WHERE partner_id = 'P00001'"
    assert bq.substitute_macros("WHERE partner_id = ${partner}", MACROS) == "WHERE partner_id = 'P00001'"
    assert bq.substitute_macros("WHERE period_type = $period_type", MACROS) == "WHERE period_type = 'month'"
    assert bq.substitute_macros("WHERE period_type = '${period_type:raw}'", MACROS) == "WHERE period_type = 'month'"
    assert bq.substitute_macros("-- ${period_type:raw}", MACROS) == "-- month"


def test_variable_values_are_escaped_as_sql_strings() -> None:
    macros = bq.Macros(START, END, {"partner": "O'Neil\\"})
    assert bq.substitute_macros("WHERE p = $partner", macros) == "WHERE p = 'O\\'Neil\\\\'"


def test_unknown_macros_are_left_and_listed() -> None:
    out = bq.substitute_macros("SELECT $__timeInterval(t), $region FROM x WHERE p = $partner", MACROS)
    assert out == "SELECT $__timeInterval(t), $region FROM x WHERE p = 'P00001'"
    assert bq.unsubstituted(out) == ["$__timeInterval", "$region"]
    assert bq.unsubstituted("SELECT 1") == []


# ------------------------------------------------------------------------------------- dashboards

DASHBOARD = {
    "title": "Program",
    "templating": {"list": [{"name": "period_type", "query": "month,quarter"}]},
    "panels": [
        {"type": "timeseries", "title": "Participation",
         "targets": [{"refId": "A", "rawSql": "SELECT 1 FROM kpi_participation WHERE period_type = '${period_type}'"}]},
        {"type": "row", "title": "Tiers", "panels": [
            {"type": "table", "title": "Tier distribution", "targets": [
                {"refId": "A", "rawSql": "SELECT 2"}, {"refId": "B", "rawSql": "SELECT 3"}]},
            {"type": "text", "title": "Notes", "options": {"content": "no SQL here"}},
        ]},
        {"type": "stat", "title": "Empty", "targets": [{"refId": "A", "rawSql": "  "}]},
    ],
}


def test_panel_queries_walk_nested_rows_and_label_repeats() -> None:
    assert list(bq.panel_queries(DASHBOARD, "program")) == [
        ("program/Participation", "SELECT 1 FROM kpi_participation WHERE period_type = '${period_type}'"),
        ("program/Tier distribution #1", "SELECT 2"),
        ("program/Tier distribution #2", "SELECT 3"),
    ]


def test_dashboard_queries_reads_every_json_file_and_substitutes(tmp_path) -> None:
    (tmp_path / "program.json").write_text(json.dumps(DASHBOARD))
    (tmp_path / "README.md").write_text("not a dashboard")
    queries = bq.dashboard_queries(tmp_path, MACROS)
    assert queries[0] == ("program/Participation", "SELECT 1 FROM kpi_participation WHERE period_type = 'month'")
    assert len(queries) == 3
    assert bq.dashboard_queries(tmp_path / "missing", MACROS) == []


def test_query_list_has_every_kpi_view_by_period_then_panels_then_the_reference(tmp_path) -> None:
    (tmp_path / "program.json").write_text(json.dumps(DASHBOARD))
    timings = bq.query_list("bench_queries_x", MACROS, tmp_path, ["kpi_participation"])
    names = [t.name for t in timings]
    for view in bq.KPI_VIEWS:
        if view in bq.UNPERIODED_VIEWS:
            assert view in names
        else:
            assert f"{view} (month)" in names and f"{view} (quarter)" in names
    assert timings[0].sql == "SELECT * FROM bench_queries_x.kpi_participation WHERE period_type = 'month'"
    assert "panel program/Participation" in names
    assert timings[-1].kind == "reference"
    assert timings[-1].sql == ("SELECT partner_id, sum(delta_available) FROM bench_queries_x.ledger FINAL "
                               "GROUP BY partner_id")


def test_qualify_points_a_named_database_at_the_scratch_one() -> None:
    sql = "SELECT * FROM incentives.kpi_cost c JOIN kpi_partners p USING (partner_id) WHERE c.period_type = 'month'"
    assert bq.qualify(sql, "bench_queries_x", ["kpi_cost", "kpi_partners"]) == (
        "SELECT * FROM bench_queries_x.kpi_cost c JOIN kpi_partners p USING (partner_id) WHERE c.period_type = 'month'")


# ------------------------------------------------------------------------------------- the table

def timing(name: str, seconds: list[float], kind: str = "view", **kw) -> bq.QueryTiming:
    return bq.QueryTiming(name, kind, "SELECT 1", seconds, **kw)


def test_median_and_the_one_second_flag() -> None:
    slow = timing("kpi_cost (month)", [1.4, 0.9, 1.2], rows_read=72_000)
    assert slow.median == 1.2 and slow.slow
    assert not timing("kpi_deals (month)", [0.2, 0.3]).slow
    assert not timing("reference", [9.0], kind="reference").slow        # the scan is not a dashboard query
    failed = timing("panel x/y", [], kind="panel", error="Code: 47. Unknown identifier")
    assert failed.median is None and failed.slow
    assert slow.as_dict() == {"name": "kpi_cost (month)", "kind": "view", "median_s": 1.2, "min_s": 0.9, "max_s": 1.4,
                              "runs": 3, "rows_read": 72_000, "bytes_read": None, "result_rows": None,
                              "memory_bytes": None, "over_1s": True}
    assert failed.as_dict()["error"] == "Code: 47. Unknown identifier"


def test_table_is_sorted_by_median_slowest_first_with_flags() -> None:
    table = bq.format_queries([
        timing("kpi_deals (month)", [0.05], rows_read=1_234, bytes_read=2_048, result_rows=12),
        timing("reference: ledger FINAL per partner", [3.5], kind="reference", rows_read=10_100_000,
               bytes_read=300 * 1024 * 1024, result_rows=2_000),
        timing("kpi_cost (month)", [1.25], rows_read=72_000, bytes_read=5 * 1024 * 1024, memory_bytes=200 * 1024 * 1024,
               result_rows=36),
        timing("panel fraud/Open", [], kind="panel", error="Code: 60. Table doesn't exist"),
    ], runs=5)
    lines = table.splitlines()
    assert lines[0] == "== queries: dashboard queries (median of 5 runs) =="
    assert lines[1].split() == ["query", "median", "s", "min", "s", "max", "s", "rows", "read", "bytes", "read",
                                "peak", "mem", "result", "rows"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    body = lines[3:7]
    assert [line.split()[0] for line in body] == ["reference:", "kpi_cost", "kpi_deals", "panel"]
    assert body[0].endswith("(reference)") and "10,100,000" in body[0] and "300.0 MB" in body[0]
    assert body[1].endswith("OVER 1 s") and "1.250" in body[1] and "200.0 MB" in body[1]
    assert "1,234" in body[2] and "2.0 KB" in body[2] and not body[2].endswith("s")
    assert "FAILED: Code: 60. Table doesn't exist" in body[3]
    # columns line up: every median ends at the same place
    assert len({line.index("3.500") + 5 if "3.500" in line else line.index("1.250") + 5 for line in body[:2]}) == 1
    assert lines[-1] == "  over 1 s: kpi_cost (month), panel fraud/Open"


def test_report_document_carries_every_query() -> None:
    report = bq.QueriesReport("queries", facts={"runs": 1, "tables": {"ledger": "100 rows in 1 parts"}})
    report.add("load ledger", 100, 0.5)
    report.timings = [timing("kpi_cost (month)", [1.5]), timing("kpi_deals (month)", [0.1])]
    doc = report.as_dict()
    assert [q["name"] for q in doc["queries"]] == ["kpi_cost (month)", "kpi_deals (month)"]
    assert doc["over_1s"] == ["kpi_cost (month)"]
    assert doc["figures"]["load ledger"]["events"] == 100
    text = bq.format_report(report)
    assert "== queries ==" in text and "load ledger" in text and "OVER 1 s" in text
    assert "tables: ledger  100 rows in 1 parts" in text
    assert doc["tables"] == {"ledger": "100 rows in 1 parts"}


def test_history_window_and_names() -> None:
    assert bq.history_window(36, datetime(2026, 12, 2, 1, 0, tzinfo=UTC)) == (START, END)
    assert bq.history_window(1, datetime(2026, 1, 31, tzinfo=UTC)) == (
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert bq.scratch_database("abc123") == "bench_queries_abc123"
    assert bq.scratch_database().startswith("bench_queries_")
    shape = bq.Shape(100, 50, 12, START, END)
    assert shape.partner_id(0) == "P00001" and shape.partner_id(11) == "P00012"
    assert bq.Shape(1, 1, 123_456, START, END).partner_id(0) == "P000001"


# ------------------------------------------------------------------------------------- SQL on current ClickHouse

DB = "bench_unit"


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory):
    chdb_session_module = pytest.importorskip("chdb.session")
    session = chdb_session_module.Session(str(tmp_path_factory.mktemp("chdb-bench")))
    yield session
    session.close()


def _query(session, sql: str) -> list[list[str]]:
    out = session.query(sql, "JSONCompact").bytes()
    return [[str(value) for value in row] for row in json.loads(out)["data"]] if out else []


def test_synthetic_history_sql_runs_on_current_clickhouse(chdb_session) -> None:
    from projections import migrate as mig

    chdb_session.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    chdb_session.query(mig.render(mig.SCHEMA_MIGRATIONS_DDL, DB))
    for migration in mig.load_migrations():
        mig.apply_steps(migration.steps(DB), lambda sql: _query(chdb_session, sql))
    shape = bq.Shape(ledger_rows=3_000, event_rows=1_500, partners=20, start=START, end=END)
    for offset, count in bq._chunks(shape.ledger_rows, 1_000):
        chdb_session.query(bq.ledger_sql(DB, shape, offset, count))
    for offset, count in bq._chunks(shape.event_rows, 1_000):
        chdb_session.query(bq.events_sql(DB, shape, offset, count))
    for sql in (bq.offboardings_sql(DB, shape), bq.rejections_sql(DB, shape), bq.tier_changes_sql(DB, shape),
                bq.alerts_sql(DB, shape, False), bq.alerts_sql(DB, shape, True),
                bq.ledger_sql(DB, shape, 0, shape.ledger_rows, bq.duplicate_filter())):
        chdb_session.query(sql)

    # each partner's seq is 1..n without gaps, its times grow with it and stay in the window
    per_partner = _query(chdb_session, f"""
        SELECT partner_id, count(), max(seq), min(occurred_at) >= toDateTime('2023-12-01 00:00:00', 'UTC'),
               max(occurred_at) < toDateTime('2026-12-01 00:00:00', 'UTC'),
               arraySort(groupArray(seq)) = arrayMap(i -> toUInt64(i), range(1, toUInt32(count()) + 1)),
               arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((seq, occurred_at))))
                   = arraySort(groupArray(occurred_at))
        FROM {DB}.ledger FINAL GROUP BY partner_id ORDER BY partner_id""")
    assert len(per_partner) == 20 and per_partner[0][:2] == ["P00001", "150"]
    assert all(row[1] == row[2] and row[3:] in (["true"] * 4, ["1"] * 4) for row in per_partner), per_partner
    kinds = dict(_query(chdb_session, f"SELECT kind, count() FROM {DB}.ledger FINAL GROUP BY kind"))
    assert set(kinds) == {"earn", "bonus", "spiff", "redeem", "hold", "release", "forfeit", "clawback", "expire",
                          "adjust", "rebate"}
    assert int(kinds["earn"]) == max(int(v) for v in kinds.values())
    stored = int(_query(chdb_session, f"SELECT count() FROM {DB}.ledger")[0][0])
    assert 3_000 < stored < 3_100                                     # ~1% written twice

    # one enrolment per partner with its segment and region; every payload is one compact JSON object
    events = _query(chdb_session, f"SELECT event_type, partner_id, payload FROM {DB}.events")
    enrolments = [json.loads(p) for t, _, p in events if t == "PartnerEnrolled"]
    assert len(enrolments) == 20 and {e["segment"] for e in enrolments} <= set(bq.SEGMENTS)
    assert {t for t, _, _ in events} >= {"PartnerEnrolled", "SaleRecorded", "SaleReturned", "DealRegistered",
                                          "DealClosed", "TrainingCompleted", "MarketingActivityCompleted"}
    for event_type, partner, payload in events:
        parsed = json.loads(payload)
        assert parsed["event_type"] == event_type and parsed["partner_id"] == partner
        assert ": " not in payload and ", " not in payload
    sale = next(json.loads(p) for t, _, p in events if t == "SaleRecorded")
    assert isinstance(sale["amount_cents"], int) and sale["order_id"].startswith("O")
    closed = {json.loads(p)["outcome"] for t, _, p in events if t == "DealClosed"}
    assert closed == {"won", "lost"}

    # alerts: the resolved state wins; the kpi views read all of it
    statuses = dict(_query(chdb_session, f"SELECT status, count() FROM {DB}.alerts FINAL GROUP BY status"))
    assert set(statuses) == {"open", "confirmed", "dismissed"}
    assert sum(int(v) for v in statuses.values()) == 40
    assert int(_query(chdb_session, f"SELECT count() FROM {DB}.tier_changes")[0][0]) > 0
