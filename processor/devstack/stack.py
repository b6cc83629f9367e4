"""The whole local stack: broker (Tansu), ClickHouse, topics, migrations, the ClickHouse sink, the
Faust worker(s), the analysts' console.

``up`` starts what is not running yet (pid file + live process check) and leaves the rest alone;
``down`` stops, by pid, only what ``up`` started (recorded in ``$INCENTIVES_HOME``); ``status``
reports each component. Everything is scoped by ``settings.home``, so a second stack with
another home and other ports (the integration tests) does not disturb the dev stack.

The sink runs as its own process (``incentives sink``, started before the workers) and the workers
with ``INCENTIVES_SINK_IN_WORKER=0``. ``up(workers=N)`` starts N workers in one consumer group
(``worker.instance_settings``: web port ``INCENTIVES_WEB_PORT + i - 1``, directory
``INCENTIVES_WORKER_DIR[-i]``); ``status`` and ``down`` find every worker by its pid file.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from processor.config import Settings
from processor.devstack import broker, clickhouse, console, proc, sink, worker
from processor.devstack.ports import PortInUseError, PortWanted, check_ports_free, find_conflicts

Echo = Callable[[str], None]

#: Start order; ``down`` goes in reverse. ``worker`` stands for every worker of the group.
COMPONENTS: tuple[ModuleType, ...] = (broker, clickhouse, sink, worker, console)

#: UTC, to the second, in names: ``incentives_archive_20261201T224900Z``, ``worker-20261201T224900Z``.
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def archive_stamp(now: datetime) -> str:
    """``now`` (timezone-aware) as a UTC stamp for archive names."""
    if now.tzinfo is None:
        raise ValueError("archive_stamp needs a timezone-aware datetime")
    return now.astimezone(UTC).strftime(STAMP_FORMAT)


def archive_database_name(database: str, stamp: str, taken: Callable[[str], bool] = lambda _n: False) -> str:
    """``<database>_archive_<stamp>``, with ``_2``, ``_3``, ... when ``taken`` says the name is
    in use (two resets within one second)."""
    base = f"{database}_archive_{stamp}"
    name, n = base, 1
    while taken(name):
        n += 1
        name = f"{base}_{n}"
    return name


def archive_root(settings: Settings) -> Path:
    """Archived copies of what a reset replaced: ``$INCENTIVES_HOME/archive`` (kept by ``down --wipe``)."""
    return settings.home / "archive"


def worker_archive_dir(settings: Settings, stamp: str, name: str = worker.NAME) -> Path:
    """``$INCENTIVES_HOME/archive/<name>-<stamp>`` (``worker-<stamp>``, ``worker-2-<stamp>``, ...),
    with ``-2``, ``-3``, ... if it exists."""
    base = archive_root(settings) / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class StackError(RuntimeError):
    """A step of ``up`` failed; the message says which and what is still running."""


@dataclass(frozen=True)
class Unit:
    """One process of the stack: a component module run with some settings (each worker of the
    group is a unit of its own, with its own settings)."""

    name: str
    component: ModuleType
    settings: Settings
    index: int = 1            # worker i of the group

    def running(self) -> int | None:
        pid: int | None = self.component.running(self.settings)
        return pid

    def address(self) -> str:
        return str(self.component.address(self.settings))

    def wanted_ports(self) -> list[PortWanted]:
        ports: list[PortWanted] = self.component.wanted_ports(self.settings)
        if self.index == 1:
            return ports
        return [dataclasses.replace(p, component=self.name,
                                    env_var=f"{p.env_var} (worker {self.index} uses it + {self.index - 1})")
                for p in ports]

    def answering(self) -> bool:
        c = self.component
        if c is broker:
            return broker.tcp_ready(broker.HOST, self.settings.kafka_port)
        if c is clickhouse:
            return clickhouse.ping(self.settings)
        if c is console:
            return console.is_ready(self.settings)
        if c is sink:
            return sink.is_ready(self.settings)
        return worker.is_ready(self.settings)

    def start(self) -> int:
        pid: int = self.component.start(self.settings)
        return pid

    def stop(self, timeout: float) -> str:
        result: str = self.component.stop(self.settings, timeout=timeout)
        return result


def _worker_units(settings: Settings, count: int | None = None) -> list[Unit]:
    """Workers 1..count, or (no count) worker 1 and every other worker with a pid file."""
    indexes = list(range(1, count + 1)) if count is not None else worker.instance_indexes(settings, with_pid_file=True)
    return [Unit(worker.instance_name(i), worker, worker.instance_settings(settings, i), i) for i in indexes]


def units(settings: Settings) -> list[Unit]:
    """Every process of the stack of ``settings`` in start order (workers: the first, and every
    other one with a pid file)."""
    return ([Unit(broker.NAME, broker, settings), Unit(clickhouse.NAME, clickhouse, settings),
             Unit(sink.NAME, sink, settings)] + _worker_units(settings) + [Unit(console.NAME, console, settings)])


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


def _still_running_note(settings: Settings) -> str:
    names = [u.name for u in units(settings) if u.running() is not None]
    if not names:
        return "Nothing of the stack is running."
    return f"Still running: {', '.join(names)} (stop with `incentives dev down`)."


def _duplicate_ports(wanted: list[PortWanted]) -> list[str]:
    seen: dict[tuple[str, int], PortWanted] = {}
    clashes = []
    for w in wanted:
        first = seen.setdefault((w.host, w.port), w)
        if first is not w:
            clashes.append(f"port {w.host}:{w.port} is wanted by both {first.component} ({first.env_var}) "
                           f"and {w.component} ({w.env_var}); move one of them")
    return clashes


def up(settings: Settings, *, with_worker: bool = True, workers: int = 1, with_sink: bool | None = None,
       with_migrations: bool = True, with_console: bool = False, echo: Echo = print,
       clock: Callable[[], datetime] = utc_now) -> dict[str, int]:
    """Start broker, ClickHouse, create the topics, run the ClickHouse migrations, start the sink
    and ``workers`` workers; each only if not running yet. Returns the pid of every running
    component (workers beyond the first as ``worker-<i>``).
    Raises :class:`StackError` on the first failure (what started stays running).

    ``with_sink`` (default: ``with_worker``) starts the ClickHouse sink as its own process
    (``incentives sink``) before the workers, and the workers then run with
    ``INCENTIVES_SINK_IN_WORKER=0``; without it they run with the caller's setting. Worker i
    (1-based) listens on ``INCENTIVES_WEB_PORT + i - 1`` and keeps its state in its own directory
    (``worker.instance_settings``); all of them are one consumer group (the same app id).

    When the broker is started (a new, empty in-memory log), what was derived from the previous
    log is set aside first, not deleted: the worker state is moved to
    ``$INCENTIVES_HOME/archive/worker-<UTC stamp>`` and the ClickHouse projection tables to the
    database ``<database>_archive_<UTC stamp>``; ``clock`` gives the stamp.

    ``with_console`` (``incentives dev up`` sets it; off for library callers such as tests, whose
    stacks would otherwise share the console's port and users file) also starts the analysts'
    console, creating a first user when there is no users file, and prints where to sign in."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if with_sink is None:
        with_sink = with_worker
    settings.home.mkdir(parents=True, exist_ok=True)
    worker_settings = settings.replace(sink_in_worker=False) if with_sink else settings
    worker_units = _worker_units(worker_settings, workers) if with_worker else []
    wanted = ([Unit(broker.NAME, broker, settings), Unit(clickhouse.NAME, clickhouse, settings)]
              + ([Unit(sink.NAME, sink, settings)] if with_sink else []) + worker_units
              + ([Unit(console.NAME, console, settings)] if with_console else []))
    clashes = _duplicate_ports([p for u in wanted for p in u.wanted_ports()])
    if clashes:
        raise StackError("cannot start the stack:\n" + "\n".join(clashes))
    to_start = [u for u in wanted if u.running() is None]

    # every port first, so that a taken port fails before anything starts
    try:
        check_ports_free([p for u in to_start for p in u.wanted_ports()])
    except PortInUseError as e:
        raise StackError(f"cannot start the stack:\n{e}") from None

    pids: dict[str, int] = {}
    fresh_log = any(u.component is broker for u in to_start)
    stamp = archive_stamp(clock()) if fresh_log else ""
    if fresh_log:
        _archive_worker_state(settings, stamp, echo)

    def ensure(unit: Unit) -> None:
        pid = unit.running()
        if pid is not None:
            echo(f"{unit.name:<11} already running (pid {pid})  {unit.address()}")
        else:
            try:
                pid = unit.start()
            except (proc.StartError, PortInUseError, OSError) as e:
                raise StackError(f"{unit.name} failed to start: {e}\n"
                                 f"{_still_running_note(settings)}") from e
            echo(f"{unit.name:<11} started (pid {pid})  {unit.address()}")
        pids[unit.name] = pid

    by_component = {u.component: u for u in wanted}
    ensure(by_component[broker])
    try:
        created = broker.create_topics(settings.kafka_bootstrap, settings.partitions)
    except Exception as e:  # kafka errors have no common useful base
        raise StackError(f"creating topics on {settings.kafka_bootstrap} failed: {e!r}\n"
                         f"{_still_running_note(settings)}") from e
    echo(f"{'topics':<11} {len(broker.TOPICS)} present ({len(created)} created now, "
         f"{settings.partitions} partitions each)")

    ensure(by_component[clickhouse])
    if fresh_log:
        _archive_projections(settings, stamp, echo)
    if with_migrations:
        run_migrations(settings, echo=echo)

    if with_sink:
        ensure(by_component[sink])
    for unit in worker_units:
        ensure(unit)
    if with_console:
        try:
            credentials = console.ensure_first_user(settings)
        except (OSError, ValueError) as e:
            raise StackError(f"creating the console's first user in {settings.console_users} failed: {e}\n"
                             f"{_still_running_note(settings)}") from e
        ensure(by_component[console])
        echo(console.credentials_line(settings, credentials))
    echo(f"state, logs and pid files: {settings.home}")
    return pids


def _archive_worker_state(settings: Settings, stamp: str, echo: Echo) -> None:
    """The broker is about to start, and it keeps its log in memory: the log begins again at
    offset 0. Each worker's local state (its tables and their per-partition watermarks) belongs to
    the previous log, and would take the new log's first offsets for ones it has already applied
    and skip them. Every worker still running on it is stopped (`ensure` starts it again) and each
    worker's state directory is moved (same file system: a rename) to ``archive/worker-<stamp>``
    (``archive/worker-<i>-<stamp>`` for worker i > 1); the logs stay where they are. A sink still
    running is stopped too: its group's offsets are gone with the old log, which it would rightly
    refuse as a log that went backwards."""
    for name, s in reversed(worker.instances(settings)):
        if worker.running(s) is not None:
            echo(f"{name:<11} {worker.stop(s)} (it ran on the previous broker's log)")
    if sink.running(settings) is not None:
        echo(f"{sink.NAME:<11} {sink.stop(settings)} (it ran on the previous broker's log)")
    for name, s in worker.instances(settings, with_pid_file=False):
        data = worker.directory(s) / "data"
        if not data.exists():
            continue
        target = worker_archive_dir(settings, stamp, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data.rename(target)
        except OSError as e:
            raise StackError(f"archiving the {name} state of the previous log ({data} -> {target}) failed: "
                             f"{e}\n{_still_running_note(settings)}") from e
        echo(f"{name:<11} state of the previous log archived to {target} (was {data})")


def _quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _archive_projections(settings: Settings, stamp: str, echo: Echo) -> None:
    """The ClickHouse projections of the previous (in-memory) log no longer match any log, and
    they may be the only copy of its ledger: move every table of the database into a new database
    ``<database>_archive_<stamp>`` (``RENAME TABLE`` across databases; ClickHouse 18.16 has no
    ``RENAME DATABASE``), so the migrations recreate the tables empty and `replay --verify`
    compares like with like. Views hold no rows and name the live database in their query: they
    are dropped from the live database and created again in the archive from the migration files
    (best effort). A database whose tables hold no rows is left as it is (no empty archives).
    Nothing is deleted; only this stack's database is touched."""
    from projections.migrate import check_identifier, client, load_migrations  # lazy: heavy imports

    db = check_identifier(settings.clickhouse_database)
    conn = client(settings, database="default")
    archive = ""
    try:
        objects = conn.execute("SELECT name, engine FROM system.tables WHERE database = %(db)s ORDER BY name",
                               {"db": db})
        tables = [name for name, engine in objects if engine != "View"]
        views = [name for name, engine in objects if engine == "View"]
        rows = sum(conn.execute(f"SELECT count() FROM {db}.{_quote(name)}")[0][0]
                   for name in tables if name != "schema_migrations")
        if rows == 0:  # nothing derived from the previous log (or no database yet): keep as is
            if tables:
                echo(f"{'clickhouse':<11} projections of the previous log: database {db} holds no rows, kept")
            return
        existing = {name for (name,) in conn.execute("SELECT name FROM system.databases")}
        archive = check_identifier(archive_database_name(db, stamp, existing.__contains__))
        conn.execute(f"CREATE DATABASE {archive}")
        for name in tables:
            conn.execute(f"RENAME TABLE {db}.{_quote(name)} TO {archive}.{_quote(name)}")
        for name in views:
            conn.execute(f"DROP TABLE {db}.{_quote(name)}")
        failed = []
        for migration in load_migrations():
            for statement in migration.statements(archive):
                if statement.startswith("CREATE VIEW"):
                    try:
                        conn.execute(statement)
                    except Exception as e:  # an older schema: the tables are what matters
                        failed.append(f"{statement.split()[5]}: {str(e).splitlines()[0]}")
    except Exception as e:  # clickhouse-driver errors have no common useful base
        where = f" into {archive}" if archive else ""
        raise StackError(f"archiving the projections of the previous log ({db}{where}) failed: {e}\n"
                         f"{_still_running_note(settings)}") from e
    finally:
        conn.disconnect()
    echo(f"{'clickhouse':<11} projections of the previous log archived to database {archive} "
         f"({len(tables)} tables moved from {db}; e.g. SELECT ... FROM {archive}.ledger FINAL)")
    if failed:
        echo(f"{'clickhouse':<11} views not recreated in {archive}: {'; '.join(failed)}")


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
    """The state of each component (every worker with a pid file); printed with ``echo`` unless
    it is None."""
    result = []
    for u in units(settings):
        pid = u.running()
        note = ""
        if pid is None:
            taken = find_conflicts(u.wanted_ports())
            if taken:
                note = "port " + ", ".join(str(t.port) for t in taken) + " in use by another process"
        result.append(ComponentStatus(
            name=u.name, pid=pid, address=u.address(),
            answering=pid is not None and u.answering(), note=note,
        ))
    if echo is not None:
        for s in result:
            echo(s.line())
        echo(f"state: {settings.home}")
    return result


def down(settings: Settings, *, wipe: bool = False, timeout: float = 30.0,
         echo: Echo = print) -> dict[str, str]:
    """Stop, by pid, what ``up`` started with these settings (every worker with a pid file):
    SIGTERM, then SIGKILL after ``timeout`` seconds; pid files are removed. ``wipe`` also deletes
    the ClickHouse data (the server's whole directory: archived databases included), every
    worker's state and the sink's log (the in-memory broker loses its topics anyway);
    ``$INCENTIVES_HOME/archive`` (archived worker states) stays."""
    results: dict[str, str] = {}
    for u in reversed(units(settings)):
        results[u.name] = u.stop(timeout)
        echo(f"{u.name:<11} {results[u.name]}")
    if wipe:
        worker_dirs = [(worker.directory(s), f"{name} state and log")
                       for name, s in worker.instances(settings, with_pid_file=False)]
        for d, what in ((clickhouse.directory(settings), "all ClickHouse data, archived databases included"),
                        *worker_dirs, (sink.directory(settings), "sink log")):
            if d.exists():
                shutil.rmtree(d)
                echo(f"removed {d} ({what})")
        if archive_root(settings).exists():
            echo(f"kept {archive_root(settings)} (archived worker states; remove it by hand)")
    return results
