"""The whole local stack: broker (Tansu), ClickHouse, topics, migrations, the Faust worker, the
analysts' console.

``up`` starts what is not running yet (pid file + live process check) and leaves the rest alone;
``down`` stops, by pid, only what ``up`` started (recorded in ``$INCENTIVES_HOME``); ``status``
reports each component. Everything is scoped by ``settings.home``, so a second stack with
another home and other ports (the integration tests) does not disturb the dev stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from processor.config import Settings
from processor.devstack import broker, clickhouse, console, proc, worker
from processor.devstack.ports import PortInUseError, check_ports_free, find_conflicts

Echo = Callable[[str], None]

#: Start order; ``down`` goes in reverse.
COMPONENTS: tuple[ModuleType, ...] = (broker, clickhouse, worker, console)

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


def worker_archive_dir(settings: Settings, stamp: str) -> Path:
    """``$INCENTIVES_HOME/archive/worker-<stamp>``, with ``-2``, ``-3``, ... if it exists."""
    base = archive_root(settings) / f"worker-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


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
    if component is console:
        return console.is_ready(settings)
    return worker.is_ready(settings)


def _running_components(settings: Settings) -> list[ModuleType]:
    return [c for c in COMPONENTS if c.running(settings) is not None]


def _still_running_note(settings: Settings) -> str:
    names = [c.NAME for c in _running_components(settings)]
    if not names:
        return "Nothing of the stack is running."
    return f"Still running: {', '.join(names)} (stop with `incentives dev down`)."


def up(settings: Settings, *, with_worker: bool = True, with_migrations: bool = True,
       with_console: bool = False, echo: Echo = print,
       clock: Callable[[], datetime] = utc_now) -> dict[str, int]:
    """Start broker, ClickHouse, create the topics, run the ClickHouse migrations, start the
    worker; each only if not running yet. Returns the pid of every running component.
    Raises :class:`StackError` on the first failure (what started stays running).

    When the broker is started (a new, empty in-memory log), what was derived from the previous
    log is set aside first, not deleted: the worker state is moved to
    ``$INCENTIVES_HOME/archive/worker-<UTC stamp>`` and the ClickHouse projection tables to the
    database ``<database>_archive_<UTC stamp>``; ``clock`` gives the stamp.

    ``with_console`` (``incentives dev up`` sets it; off for library callers such as tests, whose
    stacks would otherwise share the console's port and users file) also starts the analysts'
    console, creating a first user when there is no users file, and prints where to sign in."""
    settings.home.mkdir(parents=True, exist_ok=True)
    wanted_components = [broker, clickhouse] + ([worker] if with_worker else []) + ([console] if with_console else [])
    to_start = [c for c in wanted_components if c.running(settings) is None]

    # every port first, so that a taken port fails before anything starts
    try:
        check_ports_free([p for c in to_start for p in c.wanted_ports(settings)])
    except PortInUseError as e:
        raise StackError(f"cannot start the stack:\n{e}") from None

    pids: dict[str, int] = {}
    fresh_log = broker in to_start
    stamp = archive_stamp(clock()) if fresh_log else ""
    if fresh_log:
        _archive_worker_state(settings, stamp, echo)

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
        _archive_projections(settings, stamp, echo)
    if with_migrations:
        run_migrations(settings, echo=echo)

    if with_worker:
        ensure(worker)
    if with_console:
        try:
            credentials = console.ensure_first_user(settings)
        except (OSError, ValueError) as e:
            raise StackError(f"creating the console's first user in {settings.console_users} failed: {e}\n"
                             f"{_still_running_note(settings)}") from e
        ensure(console)
        echo(console.credentials_line(settings, credentials))
    echo(f"state, logs and pid files: {settings.home}")
    return pids


def _archive_worker_state(settings: Settings, stamp: str, echo: Echo) -> None:
    """The broker is about to start, and it keeps its log in memory: the log begins again at
    offset 0. The worker's local state (its tables and their per-partition watermarks) belongs to
    the previous log, and would take the new log's first offsets for ones it has already applied
    and skip them. A worker still running on it is stopped (`ensure` starts it again) and its state
    directory is moved (same file system: a rename) to ``archive/worker-<stamp>``; the worker's
    log file stays where it is."""
    if worker.running(settings) is not None:
        echo(f"{'worker':<11} {worker.stop(settings)} (it ran on the previous broker's log)")
    data = worker.directory(settings) / "data"
    if not data.exists():
        return
    target = worker_archive_dir(settings, stamp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        data.rename(target)
    except OSError as e:
        raise StackError(f"archiving the worker state of the previous log ({data} -> {target}) failed: "
                         f"{e}\n{_still_running_note(settings)}") from e
    echo(f"{'worker':<11} state of the previous log archived to {target} (was {data})")


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
    ``timeout`` seconds; pid files are removed. ``wipe`` also deletes the ClickHouse data (the
    server's whole directory: archived databases included) and the worker state (the in-memory
    broker loses its topics anyway); ``$INCENTIVES_HOME/archive`` (archived worker states) stays."""
    results: dict[str, str] = {}
    for c in reversed(COMPONENTS):
        results[c.NAME] = c.stop(settings, timeout=timeout)
        echo(f"{c.NAME:<11} {results[c.NAME]}")
    if wipe:
        for d, what in ((clickhouse.directory(settings), "all ClickHouse data, archived databases included"),
                        (worker.directory(settings), "worker state and log")):
            if d.exists():
                shutil.rmtree(d)
                echo(f"removed {d} ({what})")
        if archive_root(settings).exists():
            echo(f"kept {archive_root(settings)} (archived worker states; remove it by hand)")
    return results
