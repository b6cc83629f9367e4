"""The projections against the real local ClickHouse (18.16), started by the test session.

Uses the session fixture ``clickhouse_settings`` (tests/integration/conftest.py); each test module
run gets its own database, dropped at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from projections.migrate import apply_steps, client, load_migrations, migrate
from projections.sink import ClickHouseSink, SinkUnavailable, event_row

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def settings(clickhouse_settings):
    db = f"proj_test_{uuid.uuid4().hex[:8]}"
    test_settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
    migrate(test_settings)
    yield test_settings
    conn = client(test_settings, database="default")
    conn.execute(f"DROP DATABASE IF EXISTS {db}")
    conn.disconnect()


@pytest.fixture
def ch(settings):
    conn = client(settings)
    yield conn
    conn.disconnect()


@pytest.fixture
def sink(settings):
    s = ClickHouseSink(settings, max_wait=10)
    yield s
    s.close()


def counter(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


def ledger_entry(partner: str, seq: int, kind: str, delta_available: int, delta_held: int = 0,
                 account: str = "points") -> dict:
    return {
        "entry_id": f"{partner}:{seq}", "partner_id": partner, "seq": seq, "account": account,
        "kind": kind, "delta_available": delta_available, "delta_held": delta_held,
        "balance_available": 0, "balance_held": 0, "rule_id": f"{kind}.test", "rules_version": "v1",
        "source_event_id": f"e-{partner}-{seq}", "occurred_at": "2026-10-05T12:00:00Z",
        "explanation": f"{kind} {delta_available}", "prev_hash": "0" * 64, "hash": f"{seq:064x}",
    }


def alert(alert_id: str, status: str, version: int, resolved_by: str = "") -> dict:
    return {
        "alert_id": alert_id, "alert_type": "self_dealing", "severity": "high", "partner_id": "A1",
        "trigger_event_id": "e1", "hold_order_id": "O1", "evidence": "customer A1 is a partner",
        "status": status, "version": version, "occurred_at": "2026-10-05T12:00:00Z",
        "resolved_by": resolved_by, "held_points": 900,
    }


def test_migrations_apply_twice(clickhouse_settings):
    db = f"proj_twice_{uuid.uuid4().hex[:8]}"
    test_settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
    names = [m.name for m in load_migrations()]
    try:
        assert migrate(test_settings) == names
        assert migrate(test_settings) == []
        conn = client(test_settings)
        tables = {name for (name,) in conn.execute(f"SELECT name FROM system.tables WHERE database = '{db}'")}
        assert {"events", "ledger", "tier_changes", "alerts", "redemptions", "rejections", "balances",
                "alerts_current", "monthly_partner_kpis", "schema_migrations"} <= tables
        assert conn.execute(f"SELECT count() FROM {db}.schema_migrations FINAL") == [(len(names),)]
        conn.disconnect()
    finally:
        conn = client(test_settings, database="default")
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


def test_duplicate_ledger_deliveries_give_exact_sums(sink, ch, settings):
    db = settings.clickhouse_database
    entries = [
        ledger_entry("L1", 1, "earn", 33000),
        ledger_entry("L1", 2, "hold", -1200, 1200),
        ledger_entry("L1", 3, "redeem", -5000),
        ledger_entry("L1", 4, "rebate", 30000, account="rebate"),
        ledger_entry("L2", 1, "earn", 700),
    ]
    sink.write("ledger", entries)
    sink.write("ledger", entries)  # a redelivery of the whole batch
    sink.write("ledger", entries[1:3])  # and of part of it
    expected = [("L1", "points", 26800, 1200), ("L1", "rebate", 30000, 0), ("L2", "points", 700, 0)]
    assert ch.execute(
        f"SELECT partner_id, account, sum(delta_available), sum(delta_held) FROM {db}.ledger FINAL "
        "WHERE partner_id IN ('L1', 'L2') GROUP BY partner_id, account ORDER BY partner_id, account"
    ) == expected
    assert ch.execute(
        f"SELECT partner_id, account, available, held FROM {db}.balances "
        "WHERE partner_id IN ('L1', 'L2') ORDER BY partner_id, account"
    ) == expected
    assert ch.execute(f"SELECT count() FROM {db}.ledger FINAL WHERE partner_id IN ('L1', 'L2')") == [(5,)]
    # After a merge the copies are gone for good, and plain queries agree.
    ch.execute(f"OPTIMIZE TABLE {db}.ledger FINAL")
    assert ch.execute(f"SELECT count() FROM {db}.ledger WHERE partner_id IN ('L1', 'L2')") == [(5,)]
    ((occurred_at, prev_hash),) = ch.execute(
        f"SELECT occurred_at, prev_hash FROM {db}.ledger FINAL WHERE entry_id = 'L1:1'")
    assert occurred_at == datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert prev_hash == "0" * 64


def test_resolved_alert_state_wins_whatever_the_order(sink, ch, settings):
    db = settings.clickhouse_database
    sink.write("alerts", [alert("self_dealing:A1:e1", "open", 1)])
    sink.write("alerts", [alert("self_dealing:A1:e1", "dismissed", 2, "ana")])
    sink.write("alerts", [alert("self_dealing:A1:e2", "confirmed", 2, "bob")])
    sink.write("alerts", [alert("self_dealing:A1:e2", "open", 1)])  # the raise redelivered late
    sink.write("alerts", [alert("self_dealing:A1:e3", "open", 1)] * 2)
    assert ch.execute(
        f"SELECT alert_id, status, version, resolved_by, is_open, hold_order_id FROM {db}.alerts_current "
        "WHERE partner_id = 'A1' ORDER BY alert_id"
    ) == [
        ("self_dealing:A1:e1", "dismissed", 2, "ana", 0, "O1"),
        ("self_dealing:A1:e2", "confirmed", 2, "bob", 0, "O1"),
        ("self_dealing:A1:e3", "open", 1, "", 1, "O1"),
    ]


def test_every_table_takes_sink_rows(sink, ch, settings):
    db = settings.clickhouse_database
    event = {"event_id": "x-e1", "event_type": "SaleRecorded", "partner_id": "X1",
             "occurred_at": 1791201600000, "source": "erp", "order_id": "O9"}
    sink.write("events", [event_row(event, '{"event_id":"x-e1"}', "partner-events", 3, 12)] * 2)
    sink.write("tier_changes", [{"change_id": "X1:x-e1:silver", "partner_id": "X1", "from_tier": "registered",
                                 "to_tier": "silver", "reason": "upgrade", "source_event_id": "x-e1",
                                 "occurred_at": "2026-10-05T12:00:00Z", "rules_version": "v1"}])
    sink.write("redemptions", [{"redemption_id": "R1", "partner_id": "X1", "decision": "rejected",
                                "reason": "insufficient_points", "reward": "travel", "points": 90000,
                                "source_event_id": "x-e2", "occurred_at": "2026-10-05T12:00:00Z"}])
    sink.write("rejections", [
        {"event_id": "x-e2", "reason": "insufficient_points", "partner_id": "X1",
         "event_type": "RedemptionRequested", "occurred_at": "2026-10-05T12:00:00Z"},
        {"reason": "undecodable", "source": "partner-events:0:7", "raw": b"\xc3\x01\xff"},
    ])
    assert ch.execute(f"SELECT event_id, occurred_at, source, kafka_partition, kafka_offset, payload "
                      f"FROM {db}.events FINAL WHERE partner_id = 'X1'") == [
        ("x-e1", datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC), "erp", 3, 12, '{"event_id":"x-e1"}')]
    assert ch.execute(f"SELECT to_tier FROM {db}.tier_changes FINAL WHERE partner_id = 'X1'") == [("silver",)]
    assert ch.execute(f"SELECT decision, points FROM {db}.redemptions FINAL WHERE partner_id = 'X1'") == [
        ("rejected", 90000)]
    assert ch.execute(f"SELECT event_id, reason, occurred_at, raw FROM {db}.rejections FINAL "
                      "WHERE event_id IN ('x-e2', 'partner-events:0:7') ORDER BY event_id") == [
        ("partner-events:0:7", "undecodable", None, "base64:wwH/"),
        ("x-e2", "insufficient_points", datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC), ""),
    ]


def _event(partner: str, event_id: str, offset: int, event_type: str = "SaleRecorded") -> dict:
    event = {"event_id": event_id, "event_type": event_type, "partner_id": partner,
             "occurred_at": 1791201600000, "source": "erp", "order_id": "O1"}
    return event_row(event, f'{{"event_id":"{event_id}"}}', "partner-events", 0, offset)


def test_events_dedup_is_per_partner(sink, ch, settings):
    """The same event_id from two partners is two events; the same (partner, event_id) delivered
    twice is one."""
    db = settings.clickhouse_database
    sink.write("events", [_event("K1", "k-e1", 1), _event("K2", "k-e1", 2)])
    sink.write("events", [_event("K1", "k-e2", 3)])
    sink.write("events", [_event("K1", "k-e2", 3)])  # a redelivery
    read = (f"SELECT partner_id, event_id, kafka_offset FROM {db}.events FINAL "
            "WHERE partner_id IN ('K1', 'K2') ORDER BY partner_id, event_id")
    expected = [("K1", "k-e1", 1), ("K1", "k-e2", 3), ("K2", "k-e1", 2)]
    assert ch.execute(read) == expected
    ch.execute(f"OPTIMIZE TABLE {db}.events FINAL")
    assert ch.execute(read) == expected
    assert ch.execute(f"SELECT count() FROM {db}.events WHERE partner_id IN ('K1', 'K2')") == [(3,)]


@pytest.mark.parametrize("stop_after", range(5))
def test_events_rekeying_keeps_rows_after_a_run_stopped_anywhere(clickhouse_settings, tmp_path, stop_after):
    """A database at migration 009 (events keyed by event_id alone) with rows; migration 010 stops
    after ``stop_after`` of its steps (4: all done but not recorded), then ``migrate`` runs it
    again, and once more. The old table's stored rows are all kept, keyed per partner."""
    migrations = load_migrations()
    rekey = migrations[9]
    assert rekey.name == "010_events_keyed_by_partner"
    old_dir, upto_010 = tmp_path / "sql", tmp_path / "sql-010"
    old_dir.mkdir()
    upto_010.mkdir()
    for m in migrations[:9]:
        (old_dir / f"{m.name}.sql").write_text(m.sql)
    for m in migrations[:10]:
        (upto_010 / f"{m.name}.sql").write_text(m.sql)
    db = f"proj_rekey_{uuid.uuid4().hex[:8]}"
    test_settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
    conn = client(test_settings, database="default")
    try:
        migrate(test_settings, directory=old_dir)
        sorting_key = f"SELECT name, sorting_key FROM system.tables WHERE database = '{db}' AND name LIKE 'events%'"
        assert conn.execute(sorting_key) == [("events", "event_id")]
        # one insert, one part: the old key has not collapsed the two partners' e1 yet
        columns = ", ".join(_event("R1", "e1", 1))
        conn.execute(f"INSERT INTO {db}.events ({columns}) VALUES",
                     [tuple(_event(p, e, o).values()) for p, e, o in
                      [("R1", "e1", 1), ("R2", "e1", 2), ("R1", "e3", 3), ("R1", "e3", 4)]])

        steps = rekey.steps(db)
        assert len(steps) == 4
        apply_steps(steps[:stop_after], conn.execute)
        assert migrate(test_settings, directory=upto_010) == [rekey.name]
        assert migrate(test_settings, directory=upto_010) == []
        apply_steps(steps, conn.execute)  # as if the finished run had not been recorded

        assert conn.execute(sorting_key) == [("events", "partner_id, event_id")]
        assert conn.execute(f"SELECT partner_id, event_id, kafka_offset FROM {db}.events FINAL "
                            "ORDER BY partner_id, event_id") == [("R1", "e1", 1), ("R1", "e3", 4), ("R2", "e1", 2)]
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


@pytest.mark.parametrize("stop_after", range(9))
def test_month_partitioning_keeps_rows_after_a_run_stopped_anywhere(clickhouse_settings, tmp_path, stop_after):
    """A database at migration 010 with ledger and event rows (copies included); migration 011
    stops after ``stop_after`` of its steps (8: all done but not recorded), then ``migrate`` runs
    the rest, and its steps run once more. Every stored row is kept and the copies still collapse."""
    migrations = load_migrations()
    by_month = migrations[10]
    assert by_month.name == "011_ledger_events_by_month"
    old_dir = tmp_path / "sql"
    old_dir.mkdir()
    for m in migrations[:10]:
        (old_dir / f"{m.name}.sql").write_text(m.sql)
    db = f"proj_months_{uuid.uuid4().hex[:8]}"
    test_settings = dataclasses.replace(clickhouse_settings, clickhouse_database=db)
    conn = client(test_settings, database="default")
    entries = [ledger_entry("M1", seq, "earn", 100 * seq) for seq in (1, 2, 3)]
    entries[2]["occurred_at"] = "2026-11-02T08:00:00Z"
    try:
        migrate(test_settings, directory=old_dir)
        sink = ClickHouseSink(test_settings, max_wait=10)
        try:
            for _ in range(2):                                    # a redelivery
                sink.write("ledger", entries)
                sink.write("events", [event_row({"event_id": f"e{n}", "event_type": "SaleRecorded",
                                                 "partner_id": "M1", "occurred_at": at}, "{}", "partner-events",
                                                0, n) for n, at in ((1, "2026-10-05T12:00:00Z"),
                                                                    (2, "2026-11-05T12:00:00Z"))])
        finally:
            sink.close()
        steps = by_month.steps(db)
        assert len(steps) == 8
        apply_steps(steps[:stop_after], conn.execute)
        assert by_month.name in migrate(test_settings)
        apply_steps(steps, conn.execute)  # as if the finished run had not been recorded

        keys = conn.execute(f"SELECT name, partition_key FROM system.tables WHERE database = '{db}' "
                            "AND name IN ('ledger', 'events') ORDER BY name")
        assert keys == [("events", "toYYYYMM(occurred_at)"), ("ledger", "toYYYYMM(occurred_at)")]
        assert conn.execute(f"SELECT seq, delta_available FROM {db}.ledger FINAL ORDER BY seq") == [
            (1, 100), (2, 200), (3, 300)]
        assert conn.execute(f"SELECT event_id FROM {db}.events FINAL ORDER BY event_id") == [("e1",), ("e2",)]
        assert conn.execute(f"SELECT count() FROM system.tables WHERE database = '{db}' "
                            "AND name LIKE '%unpartitioned'") == [(0,)]
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.disconnect()


# --------------------------------------------------------------------------------------------
# ClickHouse unreachable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpProxy:
    """Forwards 127.0.0.1:listen_port to 127.0.0.1:target_port: "the server comes back"."""

    def __init__(self, listen_port: int, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.server.close()
        for s in self.sockets:
            s.close()


def test_sink_gives_up_after_max_wait_when_server_unreachable(settings):
    closed = dataclasses.replace(settings, clickhouse_port=free_port())
    sink = ClickHouseSink(closed, max_wait=1.0, initial_backoff=0.1, max_backoff=0.3)
    failures = counter("incentives_sink_failures_total", "ledger")
    batches = counter("incentives_sink_batches_total", "ledger")
    started = time.monotonic()
    with pytest.raises(SinkUnavailable):
        sink.write("ledger", [ledger_entry("U1", 1, "earn", 10)])
    assert 1.0 <= time.monotonic() - started < 5
    # attempts at 0, 0.1, 0.3, 0.6, 0.9, 1.0 s
    assert counter("incentives_sink_failures_total", "ledger") - failures >= 4
    assert counter("incentives_sink_batches_total", "ledger") == batches


def test_sink_catches_up_when_server_becomes_reachable(settings, ch):
    port = free_port()
    late = dataclasses.replace(settings, clickhouse_port=port)
    sink = ClickHouseSink(late, max_wait=20, initial_backoff=0.1, max_backoff=0.5)
    failures = counter("incentives_sink_failures_total", "ledger")
    proxies: list[TcpProxy] = []
    timer = threading.Timer(1.0, lambda: proxies.append(TcpProxy(port, settings.clickhouse_port)))
    timer.start()
    try:
        started = time.monotonic()
        sink.write("ledger", [ledger_entry("U2", 1, "earn", 10), ledger_entry("U2", 2, "earn", 5)])
        assert time.monotonic() - started >= 0.9
        assert counter("incentives_sink_failures_total", "ledger") - failures >= 2
        db = settings.clickhouse_database
        total = ch.execute(f"SELECT sum(delta_available) FROM {db}.ledger FINAL WHERE partner_id = 'U2'")
        assert total == [(15,)]
    finally:
        timer.join()
        sink.close()
        for proxy in proxies:
            proxy.close()
