"""The local stack as `incentives dev up` runs it: reachable services, idempotent up, down by pid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from clickhouse_driver import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from processor.devstack import broker, clickhouse, proc, stack
from processor.devstack.ports import port_in_use

pytestmark = pytest.mark.integration


def test_topics_exist_with_partitions(kafka_bootstrap, stack_settings):
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
    try:
        described = {t.get("name", t.get("topic")): t for t in admin.describe_topics(list(broker.TOPICS))}
    finally:
        admin.close()
    assert set(described) == set(broker.TOPICS)
    for name, topic in described.items():
        assert len(topic["partitions"]) == stack_settings.partitions, name


def test_kafka_produce_and_consume_one_message(kafka_bootstrap):
    topic = "partner-events"
    key, value = uuid.uuid4().hex.encode(), b"hello " + uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        meta = producer.send(topic, key=key, value=value, headers=[("h", b"1")]).get(timeout=10)
        producer.flush(10)
    finally:
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = next(iter(consumer))
    finally:
        consumer.close()
    assert (record.key, record.value, record.offset) == (key, value, meta.offset)
    assert record.headers == [("h", b"1")]


def test_clickhouse_select_1(clickhouse_settings):
    c = Client(clickhouse_settings.clickhouse_host, port=clickhouse_settings.clickhouse_port,
               send_receive_timeout=30)
    try:
        assert c.execute("SELECT 1") == [(1,)]
        assert c.execute("SELECT version()")[0][0].startswith("18.16")
    finally:
        c.disconnect()
    assert clickhouse.ping(clickhouse_settings)


def test_status_reports_running_components(local_stack):
    by_name = {s.name: s for s in stack.status(local_stack, echo=None)}
    assert by_name["broker"].running and by_name["broker"].answering
    assert by_name["clickhouse"].running and by_name["clickhouse"].answering
    assert not by_name["worker"].running


def test_up_twice_keeps_the_same_processes(local_stack):
    before = {s.name: s.pid for s in stack.status(local_stack, echo=None)}
    lines: list[str] = []
    pids = stack.up(local_stack, with_worker=False, with_migrations=False, echo=lines.append)
    assert pids == {"broker": before["broker"], "clickhouse": before["clickhouse"]}
    assert any("already running" in line for line in lines)


def test_down_stops_by_pid_only_what_it_started(tmp_path, local_stack, make_stack_settings):
    """A second, private stack on other ports: `down` stops it by pid and leaves the session's
    stack (and anything else) running."""
    s = make_stack_settings(tmp_path / "home")
    try:
        pids = stack.up(s, with_worker=False, with_migrations=False, echo=lambda _line: None)
        assert set(pids) == {"broker", "clickhouse"}
        assert all(proc.pid_alive(p) for p in pids.values())
        assert broker.pid_file(s).exists() and clickhouse.pid_file(s).exists()

        results = stack.down(s, echo=lambda _line: None)
    finally:
        stack.down(s, echo=lambda _line: None)

    assert results == {"console": "not running", "worker": "not running", "sink": "not running",
                       "clickhouse": "stopped", "broker": "stopped"}
    assert not any(proc.pid_alive(p) for p in pids.values())
    assert not broker.pid_file(s).exists() and not clickhouse.pid_file(s).exists()
    assert not port_in_use("127.0.0.1", s.kafka_port)
    assert not port_in_use("127.0.0.1", s.clickhouse_http_port)
    # the session's stack is untouched
    assert broker.running(local_stack) and clickhouse.running(local_stack)
    assert clickhouse.ping(local_stack)


def test_up_fails_clearly_when_a_port_is_taken(tmp_path, local_stack, make_stack_settings):
    """The session broker's port is taken for a stack with another home: a clear error, nothing
    started."""
    s = make_stack_settings(tmp_path / "other", kafka_port=local_stack.kafka_port)
    with pytest.raises(stack.StackError, match="INCENTIVES_KAFKA_PORT"):
        stack.up(s, with_worker=False, with_migrations=False, echo=lambda _line: None)
    assert broker.running(s) is None and clickhouse.running(s) is None
    assert broker.running(local_stack)


def test_a_fresh_broker_archives_what_was_derived_from_the_previous_log(tmp_path, local_stack, make_stack_settings):
    """Tansu keeps its log in memory: after `down`, `up` starts a log at offset 0 again. The worker
    state (whose watermarks would skip the new log's first offsets) and the ClickHouse projections
    of the old log are set aside under a dated name, not deleted, and `up` says where: the old
    ledger stays readable in the archive database, the old state in the archive folder, and the
    live database is empty and migrated. With the broker still running, nothing is reset."""
    from projections.migrate import load_migrations

    s = make_stack_settings(tmp_path / "home")
    db = s.clickhouse_database
    try:
        stack.up(s, with_worker=False, echo=lambda _line: None)
        conn = Client(host="127.0.0.1", port=s.clickhouse_port, database=db, send_receive_timeout=30)
        conn.execute("INSERT INTO ledger (entry_id, partner_id, seq, account, delta_available) VALUES",
                     [("OLD:1", "OLD", 1, "points", 100)])
        state = s.home / "worker" / "data" / "v1"
        state.mkdir(parents=True)
        (state / "marker").write_text("old log")

        lines: list[str] = []
        stack.up(s, with_worker=False, echo=lines.append)          # broker still running: kept
        assert state.exists() and conn.execute("SELECT count() FROM ledger")[0][0] == 1
        assert not any("previous log" in line for line in lines)
        assert not (s.home / "archive").exists()

        stack.down(s, echo=lambda _line: None)
        lines.clear()
        clock = iter([datetime(2026, 12, 1, 22, 49, 0, tzinfo=UTC)])
        stack.up(s, with_worker=False, echo=lines.append, clock=lambda: next(clock))
        archive_db = f"{db}_archive_20261201T224900Z"
        archive_dir = s.home / "archive" / "worker-20261201T224900Z"

        # the old worker state, moved whole
        assert not (s.home / "worker" / "data").exists()
        assert (archive_dir / "v1" / "marker").read_text() == "old log"
        assert any(line.startswith("worker") and "archived" in line and str(archive_dir) in line
                   for line in lines), lines
        # the old projections, readable in the archive database (tables and views)
        conn = Client(host="127.0.0.1", port=s.clickhouse_port, database="default", send_receive_timeout=30)
        assert any(line.startswith("clickhouse") and "archived" in line and archive_db in line
                   for line in lines), lines
        assert conn.execute(f"SELECT entry_id, delta_available FROM {archive_db}.ledger FINAL") == [("OLD:1", 100)]
        assert conn.execute(f"SELECT partner_id, available FROM {archive_db}.balances") == [("OLD", 100)]
        assert conn.execute(f"SELECT count() FROM {archive_db}.schema_migrations FINAL")[0][0] == len(
            load_migrations())
        # the live database: empty and migrated
        assert conn.execute(f"SELECT count() FROM {db}.ledger")[0][0] == 0
        assert conn.execute(f"SELECT count() FROM {db}.balances")[0][0] == 0
        assert conn.execute(f"SELECT count() FROM {db}.schema_migrations FINAL")[0][0] == len(load_migrations())
        assert conn.execute(f"SELECT sorting_key FROM system.tables WHERE database = '{db}' AND name = 'events'"
                            ) == [("partner_id, event_id",)]
        assert not any("dropped" in line or "removed" in line for line in lines), lines

        # a restart over projections without rows makes no empty archive database
        stack.down(s, echo=lambda _line: None)
        lines.clear()
        clock = iter([datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)])
        stack.up(s, with_worker=False, echo=lines.append, clock=lambda: next(clock))
        conn = Client(host="127.0.0.1", port=s.clickhouse_port, database="default", send_receive_timeout=30)
        assert conn.execute(f"SELECT name FROM system.databases WHERE name LIKE '{db}_archive_%'") == [
            (archive_db,)]
        assert any("holds no rows, kept" in line for line in lines), lines

        # `down --wipe` removes the ClickHouse data (archived databases with it) and the worker
        # state, and keeps the archived worker states
        wiped: list[str] = []
        stack.down(s, wipe=True, echo=wiped.append)
        assert not (s.home / "clickhouse").exists() and not (s.home / "worker").exists()
        assert (archive_dir / "v1" / "marker").exists()
        assert any(line.startswith("kept") and str(s.home / "archive") in line for line in wiped), wiped
    finally:
        stack.down(s, echo=lambda _line: None)
