"""The REAL local services for the integration tests, started once per test session.

A fresh temporary ``INCENTIVES_HOME`` and test ports (not the dev defaults, so a running
``incentives dev up`` stack is not disturbed): Tansu on 127.0.0.1:29092, ClickHouse native 29000 /
HTTP 28123. Started with the same code as ``incentives dev up`` (``processor.devstack``), topics
created, both stopped by pid at the end of the session. Missing binaries are an error, not a skip:
run ``scripts/bootstrap.sh`` (``scripts/test.sh`` does).

Fixtures (session scope):

- ``make_stack_settings`` -> a function ``(home, **ports) -> Settings`` for another stack on free ports
- ``stack_settings`` -> ``processor.config.Settings`` of the test stack (database ``incentives_test``)
- ``local_stack`` -> the same settings, after broker and ClickHouse are up and the topics exist
- ``kafka_bootstrap`` -> ``"127.0.0.1:29092"``
- ``clickhouse_settings`` -> ``Settings`` with the ClickHouse ports, database ``incentives_test``
- ``clickhouse_migrated`` -> ``clickhouse_settings`` after ``projections.migrate.migrate``

- ``worker`` -> the settings of the session's worker (``sink_in_worker`` off), after the ClickHouse
  sink process and the worker are up, as ``incentives dev up`` runs them; restart the worker with
  ``processor.devstack.worker.start(worker)``, the sink keeps running

Ports can be set with ``INCENTIVES_TEST_KAFKA_PORT``, ``INCENTIVES_TEST_CLICKHOUSE_PORT``,
``INCENTIVES_TEST_CLICKHOUSE_HTTP_PORT``, ``INCENTIVES_TEST_WEB_PORT``, ``INCENTIVES_TEST_SINK_PORT``.
Without them, a default
port that is already taken (another test session running at the same time) is replaced by a free
one; the ports in use are printed in pytest's header.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.config import Settings, load_settings
from processor.devstack import broker, clickhouse, proc, stack
from processor.devstack.ports import port_in_use


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports nothing listens on now (the kernel's choice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _test_port(name: str, default: int) -> int:
    """``INCENTIVES_TEST_<name>`` if set (used as given); else ``default``, or a free port when
    something else (e.g. another test session) already listens on ``default``."""
    raw = os.environ.get(f"INCENTIVES_TEST_{name}")
    if raw:
        return int(raw)
    return free_ports(1)[0] if port_in_use("127.0.0.1", default) else default


TEST_KAFKA_PORT = _test_port("KAFKA_PORT", 29092)
TEST_CLICKHOUSE_PORT = _test_port("CLICKHOUSE_PORT", 29000)
TEST_CLICKHOUSE_HTTP_PORT = _test_port("CLICKHOUSE_HTTP_PORT", 28123)
TEST_WEB_PORT = _test_port("WEB_PORT", 26066)
TEST_SINK_PORT = _test_port("SINK_PORT", 26065)
TEST_DATABASE = "incentives_test"


def pytest_report_header(config: pytest.Config) -> str:
    return (f"integration stack ports: kafka {TEST_KAFKA_PORT}, clickhouse native {TEST_CLICKHOUSE_PORT} "
            f"/ http {TEST_CLICKHOUSE_HTTP_PORT}, worker web {TEST_WEB_PORT}, sink metrics {TEST_SINK_PORT}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def make_test_settings(home: Path, *, kafka_port: int = TEST_KAFKA_PORT,
                       clickhouse_port: int = TEST_CLICKHOUSE_PORT,
                       clickhouse_http_port: int = TEST_CLICKHOUSE_HTTP_PORT,
                       web_port: int = TEST_WEB_PORT, sink_port: int = TEST_SINK_PORT) -> Settings:
    """Settings of a test stack under ``home``; ignores the caller's ``INCENTIVES_*`` variables."""
    return load_settings({
        "INCENTIVES_HOME": str(home),
        "INCENTIVES_KAFKA_PORT": str(kafka_port),
        "INCENTIVES_CLICKHOUSE_PORT": str(clickhouse_port),
        "INCENTIVES_CLICKHOUSE_HTTP_PORT": str(clickhouse_http_port),
        "INCENTIVES_CLICKHOUSE_DATABASE": TEST_DATABASE,
        "INCENTIVES_WEB_PORT": str(web_port),
        "INCENTIVES_SINK_PORT": str(sink_port),
        "INCENTIVES_APP_ID": "incentives-test",
    })


def require_binaries() -> None:
    """Fail loudly (never skip) when the local services cannot run here."""
    missing = []
    if not clickhouse.installed():
        missing.append(f"{clickhouse.SERVER_BIN} (apt-get install clickhouse-server clickhouse-client)")
    try:
        broker.broker_bin()
    except (proc.StartError, OSError, RuntimeError, ValueError) as e:
        missing.append(f"the Tansu broker binary ({e})")
    if missing:
        pytest.fail("integration tests need the real services; missing: " + "; ".join(missing)
                    + ". Run scripts/bootstrap.sh.", pytrace=False)


@pytest.fixture(scope="session")
def make_stack_settings():
    """``make_stack_settings(home, kafka_port=..., clickhouse_port=..., clickhouse_http_port=...,
    web_port=..., sink_port=...)`` -> Settings of another test stack (e.g. a private one to stop).
    Ports left out are free ports, not the session stack's."""
    def make(home: Path, **ports: int) -> Settings:
        names = ("kafka_port", "clickhouse_port", "clickhouse_http_port", "web_port", "sink_port")
        chosen = dict(zip(names, free_ports(len(names)), strict=True))
        chosen.update(ports)
        return make_test_settings(home, **chosen)

    return make


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_test_settings(tmp_path_factory.mktemp("incentives-home"))


@pytest.fixture(scope="session")
def local_stack(stack_settings: Settings) -> Iterator[Settings]:
    """Broker + ClickHouse of the test session (no worker, no migrations), topics created."""
    require_binaries()
    lines: list[str] = []
    try:
        stack.up(stack_settings, with_worker=False, with_migrations=False, echo=lines.append)
    except stack.StackError as e:
        stack.down(stack_settings, echo=lambda _line: None)
        pytest.fail(f"could not start the test stack: {e}", pytrace=False)
    try:
        yield stack_settings
    finally:
        stack.down(stack_settings, echo=lambda _line: None)
        if os.environ.get("INCENTIVES_KEEP_TEST_HOME") == "1":      # to read the logs afterwards
            print(f"\ntest stack home kept: {stack_settings.home}")
        else:
            shutil.rmtree(stack_settings.home, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: Settings) -> str:
    return local_stack.kafka_bootstrap


@pytest.fixture(scope="session")
def clickhouse_settings(local_stack: Settings) -> Settings:
    return local_stack


@pytest.fixture(scope="session")
def clickhouse_migrated(clickhouse_settings: Settings) -> Settings:
    from projections.migrate import migrate

    migrate(clickhouse_settings)
    return clickhouse_settings


@pytest.fixture(scope="session")
def worker(clickhouse_migrated: Settings) -> Iterator[Settings]:
    """The Faust worker of the test session, on the test stack, started like `incentives dev up`
    starts it: the ClickHouse sink as its own process (`incentives sink`) first, then the worker
    with INCENTIVES_SINK_IN_WORKER=0. The settings yielded carry that setting, so a test that
    restarts the worker with them keeps the sink out of it; the sink process runs on meanwhile."""
    from processor.devstack import sink as sink_proc
    from processor.devstack import worker as worker_proc

    settings = clickhouse_migrated.replace(sink_in_worker=False)
    sink_proc.start(settings)
    try:
        worker_proc.start(settings)
        try:
            yield settings
        finally:
            worker_proc.stop(settings)
    finally:
        sink_proc.stop(settings)
