"""The projection SQL and the sink's pure parts.

The DDL is run on current ClickHouse (embedded, chdb) when chdb is installed; the same files run on
the local ClickHouse 18.16 in tests/integration/test_projections.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from clickhouse_driver import errors as ch_errors
from prometheus_client import REGISTRY

from projections import migrate as mig
from projections import sink as sk

DB = "proj_unit"


class FakeSettings:
    clickhouse_host = "127.0.0.1"
    clickhouse_port = 1
    clickhouse_database = DB


def ledger_entry(partner: str, seq: int, kind: str, delta_available: int, delta_held: int = 0,
                 account: str = "points", occurred_at: str = "2026-10-05T12:00:00Z") -> dict:
    return {
        "entry_id": f"{partner}:{seq}", "partner_id": partner, "seq": seq, "account": account,
        "kind": kind, "delta_available": delta_available, "delta_held": delta_held,
        "balance_available": 0, "balance_held": 0, "rule_id": f"{kind}.test", "rules_version": "v1",
        "source_event_id": f"e-{partner}-{seq}", "occurred_at": occurred_at,
        "explanation": f"{kind} {delta_available}", "prev_hash": "0" * 64, "hash": "ab" * 32,
    }


def alert(status: str, version: int, resolved_by: str = "") -> dict:
    return {
        "alert_id": "duplicate_order:P1:e7", "alert_type": "duplicate_order", "severity": "high",
        "partner_id": "P1", "trigger_event_id": "e7", "hold_order_id": None, "evidence": "order O1",
        "status": status, "version": version, "occurred_at": "2026-10-05T12:00:00Z",
        "resolved_by": resolved_by, "held_points": 1200,
    }


# --------------------------------------------------------------------------------------------
# Migration files


def test_migration_files_are_numbered_and_idempotent_statements():
    migrations = mig.load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations][:6] == [
        "001_events", "002_ledger", "003_tier_changes", "004_alerts", "005_redemptions", "006_rejections",
    ]
    for migration in migrations:
        steps = migration.steps(DB)
        assert steps, migration.name
        for step in steps:
            # repeatable by itself, or guarded by a query on the schema (see projections/migrate.py)
            assert step.when is not None or re.match(
                r"(CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS|DROP TABLE IF EXISTS) proj_unit\.",
                step.sql), (migration.name, step.sql[:80])
            assert "{db}" not in step.sql and "{db}" not in (step.when or "")
    assert migrations[9].name == "010_events_keyed_by_partner"


def test_split_statements_drops_comment_lines_and_splits_on_semicolon_lines():
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE a (x UInt8) ENGINE = Log;\n\nCREATE VIEW b AS\nSELECT 1;\n"
    )
    assert mig.split_statements(sql) == [
        "CREATE TABLE a (x UInt8) ENGINE = Log",
        "CREATE VIEW b AS\nSELECT 1",
    ]


def test_parse_steps_keeps_each_guard_with_the_statement_after_it():
    sql = (
        "-- about the file\n"
        "-- when: SELECT count() FROM system.tables WHERE name = 'a'\n"
        "-- a comment between guard and statement\n"
        "RENAME TABLE d.a\n  TO d.b;\n"
        "CREATE TABLE IF NOT EXISTS d.a (x UInt8) ENGINE = Log;\n"
        "-- when: SELECT 1\n"
        "DROP TABLE IF EXISTS d.b;\n"
    )
    assert mig.parse_steps(sql) == [
        mig.Step("RENAME TABLE d.a\n  TO d.b", "SELECT count() FROM system.tables WHERE name = 'a'"),
        mig.Step("CREATE TABLE IF NOT EXISTS d.a (x UInt8) ENGINE = Log"),
        mig.Step("DROP TABLE IF EXISTS d.b", "SELECT 1"),
    ]
    assert [s.sql for s in mig.parse_steps(sql)] == mig.split_statements(sql)


@pytest.mark.parametrize("sql", [
    "CREATE TABLE d.a\n-- when: SELECT 1\n(x UInt8) ENGINE = Log;",
    "-- when: SELECT 1\n-- when: SELECT 2\nDROP TABLE IF EXISTS d.a;",
    "DROP TABLE IF EXISTS d.a;\n-- when: SELECT 1\n",
    "-- when:\nDROP TABLE IF EXISTS d.a;",
])
def test_parse_steps_refuses_a_misplaced_guard(sql):
    with pytest.raises(mig.MigrationError):
        mig.parse_steps(sql)


def test_apply_steps_runs_a_guarded_step_only_while_its_guard_holds():
    answers = {"G0": [(0,)], "G1": [(1,)], "GS": [["0"]], "GE": []}
    ran: list[str] = []

    def query(sql):
        ran.append(sql)
        return answers.get(sql, [])

    steps = [mig.Step("A"), mig.Step("B", "G0"), mig.Step("C", "G1"), mig.Step("D", "GS"), mig.Step("E", "GE")]
    assert [s.sql for s in mig.apply_steps(steps, query)] == ["A", "C"]
    assert ran == ["A", "G0", "G1", "C", "GS", "GE"]


def test_render_refuses_a_database_name_that_is_not_an_identifier():
    assert mig.render("SELECT * FROM {db}.t", "incentives") == "SELECT * FROM incentives.t"
    with pytest.raises(ValueError):
        mig.render("SELECT * FROM {db}.t", "x; DROP DATABASE y")


# --------------------------------------------------------------------------------------------
# Record -> row mappings


def test_ledger_row_types_and_column_order():
    row = sk.ledger_row(ledger_entry("P1", 3, "earn", 33000))
    assert row["occurred_at"] == datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert row["seq"] == 3 and row["delta_available"] == 33000
    (params,) = sk.row_tuples("ledger", [ledger_entry("P1", 3, "earn", 33000)])
    assert params[:3] == ("P1:3", "P1", 3)
    assert params[12] == datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert len(params) == 16


def test_event_row_from_epoch_millis_floors_to_the_second():
    event = {"event_id": "e1", "event_type": "SaleRecorded", "partner_id": "P1",
             "occurred_at": 1791201600999, "source": None, "order_id": "O1"}
    row = sk.event_row(event, None, "partner-events", 2, 41)
    # 1791201600 s = 2026-10-05T12:00:00Z
    assert row["occurred_at"] == datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert row["source"] == "unknown"
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("partner-events", 2, 41)
    assert json.loads(row["payload"])["occurred_at"] == "2026-10-05T12:00:00Z"
    line = '{"event_id":"e1"}'
    assert sk.event_row(event, line.encode(), "t", 0, 0)["payload"] == line


def test_alert_row_keeps_null_hold_order_id():
    row = sk.alert_row(alert("open", 1))
    assert row["hold_order_id"] is None and row["version"] == 1 and row["held_points"] == 1200
    assert sk.alert_row({**alert("open", 1), "hold_order_id": "O1"})["hold_order_id"] == "O1"


def test_rejection_row_for_a_dead_letter_without_event_id():
    avro = b"\xc3\x01\x00\xff\xfe"
    row = sk.rejection_row({"reason": "undecodable"}, source="partner-events:1:17", raw=avro)
    assert row["event_id"] == "partner-events:1:17"
    assert row["raw"] == "base64:wwEA//4="
    assert row["occurred_at"] is None and row["partner_id"] == "" and row["event_type"] == ""
    rule = sk.rejection_row({"event_id": "e9", "reason": "insufficient_points", "partner_id": "P1",
                             "event_type": "RedemptionRequested", "occurred_at": "2026-10-05T12:00:00Z"},
                            raw=b'{"event_id":"e9"}')
    assert rule["occurred_at"] == datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert rule["raw"] == '{"event_id":"e9"}'


@pytest.mark.parametrize("table,record", [
    ("ledger", ledger_entry("P1", 1, "earn", 100)),
    ("alerts", alert("dismissed", 2, "ana")),
    ("tier_changes", {"change_id": "P1:e1:silver", "partner_id": "P1", "from_tier": "registered",
                      "to_tier": "silver", "reason": "upgrade", "source_event_id": "e1",
                      "occurred_at": "2026-10-05T12:00:00Z", "rules_version": "v1"}),
    ("redemptions", {"redemption_id": "R1", "partner_id": "P1", "decision": "accepted", "reason": "",
                     "reward": "mdf", "points": 500, "source_event_id": "e2",
                     "occurred_at": "2026-10-05T12:00:00Z"}),
    ("rejections", {"event_id": "e3", "reason": "unknown_partner", "partner_id": "P9",
                    "event_type": "SaleRecorded", "occurred_at": None}),
    ("events", sk.event_row({"event_id": "e1", "event_type": "PartnerEnrolled", "partner_id": "P1",
                             "occurred_at": "2026-10-05T12:00:00Z", "source": "prm"}, "{}", "t", 0, 5)),
])
def test_mappings_accept_their_own_output(table, record):
    once = sk.ROW_MAPPERS[table](record)
    assert sk.ROW_MAPPERS[table](once) == once
    assert tuple(once) == sk.TABLE_COLUMNS[table]


def test_a_record_missing_a_field_is_a_value_error():
    entry = ledger_entry("P1", 1, "earn", 100)
    del entry["hash"]
    with pytest.raises(ValueError, match="hash"):
        sk.row_tuples("ledger", [entry])
    with pytest.raises(ValueError, match="unknown projection table"):
        sk.row_tuples("nope", [entry])


# --------------------------------------------------------------------------------------------
# Retry logic (no server: a fake client, a fake clock)


class FakeClient:
    def __init__(self, failures: list[Exception]):
        self.failures = failures
        self.calls: list[tuple[str, list]] = []

    def execute(self, sql, params):
        self.calls.append((sql, params))
        if self.failures:
            raise self.failures.pop(0)

    def disconnect(self):
        pass


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def counter(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


def test_write_retries_connection_errors_with_backoff_then_inserts_once():
    fake_time = FakeTime()
    client = FakeClient([ch_errors.NetworkError("refused"), ch_errors.NetworkError("refused")])
    sink = sk.ClickHouseSink(FakeSettings(), max_wait=10, initial_backoff=0.5, client_factory=lambda: client,
                             sleep=fake_time.sleep, clock=fake_time.clock)
    failures = counter("incentives_sink_failures_total", "tier_changes")
    batches = counter("incentives_sink_batches_total", "tier_changes")
    record = {"change_id": "P1:e1:silver", "partner_id": "P1", "from_tier": "registered", "to_tier": "silver",
              "reason": "upgrade", "source_event_id": "e1", "occurred_at": "2026-10-05T12:00:00Z",
              "rules_version": "v1"}
    sink.write("tier_changes", [record, record])
    assert fake_time.sleeps == [0.5, 1.0]
    assert len(client.calls) == 3
    sql, params = client.calls[-1]
    assert sql == ("INSERT INTO proj_unit.tier_changes (change_id, partner_id, from_tier, to_tier, reason, "
                   "source_event_id, occurred_at, rules_version) VALUES")
    assert len(params) == 2
    assert counter("incentives_sink_failures_total", "tier_changes") == failures + 2
    assert counter("incentives_sink_batches_total", "tier_changes") == batches + 1


def test_write_gives_up_after_max_wait():
    fake_time = FakeTime()
    client = FakeClient([ch_errors.NetworkError("refused")] * 100)
    sink = sk.ClickHouseSink(FakeSettings(), max_wait=5, initial_backoff=1, max_backoff=2,
                             client_factory=lambda: client, sleep=fake_time.sleep, clock=fake_time.clock)
    with pytest.raises(sk.SinkUnavailable, match="unreachable for 5 s"):
        sink.write("ledger", [ledger_entry("P1", 1, "earn", 1)])
    # 1 + 2 + 2 = 5 s of sleep, an attempt after each: 4 attempts in all
    assert fake_time.sleeps == [1, 2, 2]
    assert len(client.calls) == 4


def test_write_does_not_retry_a_schema_error_and_skips_empty_batches():
    client = FakeClient([ch_errors.ServerException("no such column", code=16)])
    sink = sk.ClickHouseSink(FakeSettings(), client_factory=lambda: client, sleep=pytest.fail)
    sink.write("ledger", [])
    assert client.calls == []
    with pytest.raises(ch_errors.ServerException):
        sink.write("ledger", [ledger_entry("P1", 1, "earn", 1)])
    assert len(client.calls) == 1


# --------------------------------------------------------------------------------------------
# The DDL on current ClickHouse (chdb)


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory):
    chdb_session_module = pytest.importorskip("chdb.session")
    session = chdb_session_module.Session(str(tmp_path_factory.mktemp("chdb")))
    yield session
    session.close()


def _query(session, sql: str) -> list[list]:
    """Rows with every value as text (64-bit integers are quoted or not depending on the version)."""
    out = session.query(sql, "JSONCompact").bytes()
    return [[str(value) for value in row] for row in json.loads(out)["data"]] if out else []


def _insert(session, table: str, records: list[dict]) -> None:
    """Insert through the sink's own mappings, as JSONEachRow (chdb takes no driver params)."""
    lines = []
    for values in sk.row_tuples(table, records):
        row = {}
        for name, value in zip(sk.TABLE_COLUMNS[table], values, strict=True):
            row[name] = value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value
        lines.append(json.dumps(row))
    session.query(f"INSERT INTO {DB}.{table} FORMAT JSONEachRow\n" + "\n".join(lines))


def _apply(session, migrations, db: str = DB) -> None:
    """What ``migrate`` does per file, without the bookkeeping: every run applies every step."""
    session.query(f"CREATE DATABASE IF NOT EXISTS {db}")
    session.query(mig.render(mig.SCHEMA_MIGRATIONS_DDL, db))
    for migration in migrations:
        mig.apply_steps(migration.steps(db), lambda sql: _query(session, sql))


def test_ddl_runs_twice_on_current_clickhouse(chdb_session):
    for _ in range(2):
        _apply(chdb_session, mig.load_migrations())
    for table, columns in sk.TABLE_COLUMNS.items():
        described = _query(chdb_session, f"DESCRIBE TABLE {DB}.{table}")
        assert tuple(row[0] for row in described) == columns, table
    for view in ("balances", "alerts_current", "monthly_partner_kpis"):
        _query(chdb_session, f"SELECT * FROM {DB}.{view}")
    assert _query(chdb_session, f"SELECT sorting_key FROM system.tables WHERE database = '{DB}' "
                                "AND name LIKE 'events%'") == [["partner_id, event_id"]]


def test_views_are_exact_after_duplicate_deliveries_on_current_clickhouse(chdb_session):
    test_ddl_runs_twice_on_current_clickhouse(chdb_session)
    entries = [
        ledger_entry("P1", 1, "earn", 33000),
        ledger_entry("P1", 2, "hold", -1200, 1200),
        ledger_entry("P1", 3, "redeem", -5000, occurred_at="2026-11-02T08:00:00Z"),
        ledger_entry("P1", 4, "rebate", 30000, account="rebate", occurred_at="2026-11-01T00:00:00Z"),
        ledger_entry("P2", 1, "earn", 700),
    ]
    _insert(chdb_session, "ledger", entries)
    _insert(chdb_session, "ledger", entries)  # a redelivery
    _insert(chdb_session, "alerts", [alert("confirmed", 2, "ana")])
    _insert(chdb_session, "alerts", [alert("open", 1)])  # the raise arrives late

    balances = _query(chdb_session, f"SELECT partner_id, account, available, held FROM {DB}.balances "
                                    "ORDER BY partner_id, account")
    # P1 points: 33000 - 1200 - 5000 = 26800 available, 1200 held
    assert balances == [["P1", "points", "26800", "1200"], ["P1", "rebate", "30000", "0"],
                        ["P2", "points", "700", "0"]]
    kpis = _query(chdb_session, f"SELECT partner_id, toString(month), points_earned, points_redeemed, "
                                f"points_held, rebate_cents, ledger_entries FROM {DB}.monthly_partner_kpis "
                                "ORDER BY partner_id, month")
    assert kpis == [["P1", "2026-10-01", "33000", "0", "1200", "0", "2"],
                    ["P1", "2026-11-01", "0", "5000", "0", "30000", "2"],
                    ["P2", "2026-10-01", "700", "0", "0", "0", "1"]]
    alerts = _query(chdb_session, f"SELECT alert_id, status, is_open, resolved_by FROM {DB}.alerts_current")
    assert alerts == [["duplicate_order:P1:e7", "confirmed", "0", "ana"]]


def _event(partner: str, event_id: str, offset: int) -> dict:
    return sk.event_row({"event_id": event_id, "event_type": "SaleRecorded", "partner_id": partner,
                         "occurred_at": "2026-10-05T12:00:00Z", "source": "erp"}, "{}", "partner-events", 0, offset)


@pytest.mark.parametrize("stop_after", range(5))
def test_events_rekeying_keeps_rows_after_a_run_stopped_anywhere_on_current_clickhouse(chdb_session, stop_after):
    """A database at migration 009 (events keyed by event_id) with rows; 010 stops after
    ``stop_after`` of its steps, then the whole of it runs again, twice (the second time as if the
    finished run had not been recorded)."""
    db = f"rekey_{stop_after}"
    migrations = mig.load_migrations()
    rekey = migrations[9]
    _apply(chdb_session, migrations[:9], db)
    rows = [_event("P1", "e1", 1), _event("P2", "e2", 2), _event("P1", "e3", 3), _event("P1", "e3", 4)]
    lines = "\n".join(json.dumps({k: v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v
                                  for k, v in row.items()}) for row in rows)
    chdb_session.query(f"INSERT INTO {db}.events FORMAT JSONEachRow\n{lines}")

    steps = rekey.steps(db)
    mig.apply_steps(steps[:stop_after], lambda sql: _query(chdb_session, sql))
    for _ in range(2):
        mig.apply_steps(steps, lambda sql: _query(chdb_session, sql))

    assert _query(chdb_session, f"SELECT name, sorting_key FROM system.tables WHERE database = '{db}' "
                                "AND name LIKE 'events%'") == [["events", "partner_id, event_id"]]
    assert _query(chdb_session, f"SELECT partner_id, event_id FROM {db}.events FINAL "
                                "ORDER BY partner_id, event_id") == [["P1", "e1"], ["P1", "e3"], ["P2", "e2"]]
    described = _query(chdb_session, f"DESCRIBE TABLE {db}.events")
    assert tuple(row[0] for row in described) == sk.TABLE_COLUMNS["events"]


# --------------------------------------------------------------------------------------------
# The KPI rollup and views on current ClickHouse: the worked program of tests/kpi_worked.py


def _literal(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _execute_on(session):
    """`execute(sql, params)` for chdb, filling in clickhouse-driver style %(name)s parameters."""
    def execute(sql: str, params: dict | None = None) -> list[tuple]:
        if params:
            sql = re.sub(r"%\((\w+)\)s", lambda m: _literal(params[m[1]]), sql)
        return [tuple(row) for row in _query(session, sql)]
    return execute


def test_kpi_rollup_and_views_give_the_worked_figures_on_current_clickhouse(chdb_session):
    from processor.projection_load import project_lines
    from processor.report import parse_period, report
    from projections import kpi
    from tests.kpi_worked import EXPECTED, WORKED

    db = "kpi_unit"
    _apply(chdb_session, mig.load_migrations(), db)
    rows = project_lines(WORKED)
    for _ in range(2):                                    # a redelivery
        for table, table_rows in rows.items():
            lines = []
            for values in sk.row_tuples(table, table_rows, mapped=True):
                lines.append(json.dumps({name: value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime)
                                         else value for name, value in zip(sk.TABLE_COLUMNS[table], values,
                                                                           strict=True)}))
            chdb_session.query(f"INSERT INTO {db}.{table} FORMAT JSONEachRow\n" + "\n".join(lines))
    execute = _execute_on(chdb_session)
    kpi.write_program_settings(lambda sql, params: chdb_session.query(
        sql + " (" + ", ".join(_literal(str(v)) for v in params[0]) + ")"), db, "v1", 1,
        datetime(2026, 12, 1, tzinfo=UTC))
    kpi.rebuild(execute, db, kpi.touched(rows))
    reports = {period: report(execute, db, parse_period(period)) for period in {p for p, _, _ in EXPECTED}}
    got = {(period, family, key): reports[period][family][key] for period, family, key in EXPECTED}
    assert got == EXPECTED
