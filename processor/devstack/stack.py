"""The whole local stack: broker (Tansu), ClickHouse, topics, migrations, the Faust worker.

``up`` starts what is not running yet (pid file + live process check) and leaves the rest alone;
``down`` stops, by pid, only what ``up`` started (recorded in ``$INCENTIVES_HOME``); ``status``
reports each component. Everything is scoped by ``settings.home``, so a second stack with
another home and other ports (the integration tests) does not disturb the dev stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from processor.config import Settings
from processor.devstack import broker, clickhouse, proc, worker
from processor.devstack.ports import PortInUseError, check_ports_free, find_conflicts

Echo = Callable[[str], None]

#: Start order; ``down`` goes in reverse.
COMPONENTS: tuple[ModuleType, ...] = (broker, clickhouse, worker)


class StackError(RuntimeError):
    """A step of ``up`` failed; the message says which and what is still running."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    address: str
    answering: bool
    note: str = ""

    @property
    def running(self) -> bool:
        return self.pid is not None

    def line(self) -> str:
        state = "running" if self.running else "stopped"
        if self.running and not self.answering:
            state = "running (not answering yet)"
        pid = f"pid {self.pid}" if self.pid else "-"
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.name:<11} {state:<28} {pid:<11} {self.address}{note}"


def _answering(component: ModuleType, settings: Settings) -> bool:
    if component is broker:
        return broker.tcp_ready(broker.HOST, settings.kafka_port)
    if component is clickhouse:
        return clickhouse.ping(settings)
    return worker.is_ready(settings)


def _running_components(settings: Settings) -> list[ModuleType]:
    return [c for c in COMPONENTS if c.running(settings) is not None]


def _still_running_note(settings: Settings) -> str:
    names = [c.NAME for c in _running_components(settings)]
    if not names:
        return "Nothing of the stack is running."
    return f"Still running: {', '.join(names)} (stop with `incentives dev down`)."


def up(settings: Settings, *, with_worker: bool = True, with_migrations: bool = True,
       echo: Echo = print) -> dict[str, int]:
    """Start broker, ClickHouse, create the topics, run the ClickHouse migrations, start the
    worker; each only if not running yet. Returns the pid of every running component.
    Raises :class:`StackError` on the first failure (what started stays running)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    wanted_components = [broker, clickhouse] + ([worker] if with_worker else [])
    to_start = [c for c in wanted_components if c.running(settings) is None]

    # every port first, so that a taken port fails before anything starts
    try:
        check_ports_free([p for c in to_start for p in c.wanted_ports(settings)])
    except PortInUseError as e:
        raise StackError(f"cannot start the stack:\n{e}") from None

    pids: dict[str, int] = {}
    fresh_log = broker in to_start
    if fresh_log:
        _forget_worker_state(settings, echo)

    def ensure(component: ModuleType) -> None:
        pid = component.running(settings)
        if pid is not None:
            echo(f"{component.NAME:<11} already running (pid {pid})  {component.address(settings)}")
        else:
            try:
                pid = component.start(settings)
            except (proc.StartError, PortInUseError, OSError) as e:
                raise StackError(f"{component.NAME} failed to start: {e}\n"
                                 f"{_still_running_note(settings)}") from e
            echo(f"{component.NAME:<11} started (pid {pid})  {component.address(settings)}")
        pids[component.NAME] = pid

    ensure(broker)
    try:
        created = broker.create_topics(settings.kafka_bootstrap, settings.partitions)
    except Exception as e:  # kafka errors have no common useful base
        raise StackError(f"creating topics on {settings.kafka_bootstrap} failed: {e!r}\n"
                         f"{_still_running_note(settings)}") from e
    echo(f"{'topics':<11} {len(broker.TOPICS)} present ({len(created)} created now, "
         f"{settings.partitions} partitions each)")

    ensure(clickhouse)
    if fresh_log:
        _drop_projections(settings, echo)
    if with_migrations:
        run_migrations(settings, echo=echo)

    if with_worker:
        ensure(worker)
    echo(f"state, logs and pid files: {settings.home}")
    return pids


def _forget_worker_state(settings: Settings, echo: Echo) -> None:
    """The broker is about to start, and it keeps its log in memory: the log begins again at
    offset 0. The worker's local state (its tables and their per-partition watermarks) belongs to
    the previous log, and would take the new log's first offsets for ones it has already applied
    and skip them. A worker still running on it is stopped (`ensure` starts it again) and the state
    is removed; the worker's log file stays."""
    if worker.running(settings) is not None:
        echo(f"{'worker':<11} {worker.stop(settings)} (it ran on the previous broker's log)")
    data = worker.directory(settings) / "data"
    if data.exists():
        shutil.rmtree(data)
        echo(f"{'worker':<11} state of the previous log removed ({data})")


def _drop_projections(settings: Settings, echo: Echo) -> None:
    """The ClickHouse projections of the previous (in-memory) log no longer match any log: drop
    their database, so the migrations recreate it empty and `replay --verify` compares like with
    like. Only this stack's database is touched."""
    from projections.migrate import check_identifier, client  # lazy: heavy imports

    db = check_identifier(settings.clickhouse_database)
    conn = client(settings, database="default")
    try:
        if conn.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db})[0][0]:
            conn.execute(f"DROP DATABASE {db}")
            echo(f"{'clickhouse':<11} projections of the previous log dropped (database {db})")
    except Exception as e:  # clickhouse-driver errors have no common useful base
        raise StackError(f"dropping the projections of the previous log ({db}) failed: {e}\n"
                         f"{_still_running_note(settings)}") from e
    finally:
        conn.disconnect()


def run_migrations(settings: Settings, *, echo: Echo = print) -> None:
    """Apply the ClickHouse migrations (``projections.migrate.migrate(settings)``)."""
    try:
        from projections.migrate import migrate  # lazy: written separately, heavy imports
    except ImportError as e:
        raise StackError(f"ClickHouse migrations: projections.migrate is not available ({e}).\n"
                         f"{_still_running_note(settings)}") from e
    try:
        result = migrate(settings)
    except Exception as e:
        raise StackError(f"ClickHouse migrations failed on database {settings.clickhouse_database!r}: "
                         f"{e}\n{_still_running_note(settings)}") from e
    detail = f": {result}" if result not in (None, "") else ""
    echo(f"{'migrations':<11} applied to database {settings.clickhouse_database}{detail}")


def status(settings: Settings, *, echo: Echo | None = print) -> list[ComponentStatus]:
    """The state of each component; printed with ``echo`` unless it is None."""
    result = []
    for c in COMPONENTS:
        pid = c.running(settings)
        note = ""
        if pid is None:
            taken = find_conflicts(c.wanted_ports(settings))
            if taken:
                note = "port " + ", ".join(str(t.port) for t in taken) + " in use by another process"
        result.append(ComponentStatus(
            name=c.NAME, pid=pid, address=c.address(settings),
            answering=pid is not None and _answering(c, settings), note=note,
        ))
    if echo is not None:
        for s in result:
            echo(s.line())
        echo(f"state: {settings.home}")
    return result


def down(settings: Settings, *, wipe: bool = False, timeout: float = 30.0,
         echo: Echo = print) -> dict[str, str]:
    """Stop, by pid, what ``up`` started with these settings: SIGTERM, then SIGKILL after
    ``timeout`` seconds; pid files are removed. ``wipe`` also deletes the ClickHouse data and
    the worker state (the in-memory broker loses its topics anyway)."""
    results: dict[str, str] = {}
    for c in reversed(COMPONENTS):
        results[c.NAME] = c.stop(settings, timeout=timeout)
        echo(f"{c.NAME:<11} {results[c.NAME]}")
    if wipe:
        for d in (clickhouse.directory(settings), worker.directory(settings)):
            if d.exists():
                shutil.rmtree(d)
                echo(f"removed {d}")
    return results
