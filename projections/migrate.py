"""ClickHouse schema migrations for the projections.

The numbered files in ``projections/sql/`` (``001_events.sql``, ...) are applied in order. Each file
holds statements separated by lines ending in ``;``, with ``{db}`` standing for the database name.
Every statement is safe to repeat, so a run that stopped half way can simply run again; applied
files are recorded in ``{db}.schema_migrations`` so a normal start only looks them up. A plain
statement is ``CREATE ... IF NOT EXISTS`` (or ``DROP ... IF EXISTS``). A statement that is not
repeatable by itself (``RENAME``, ``INSERT ... SELECT``) is preceded by a guard line

    -- when: SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'x'

and runs only when that query's first value is non-zero: the guard says "this step is still to
do", read from the schema itself (not from a record that a crash could leave behind). Two runs at
once are safe for plain statements; on a guarded one the slower run may fail (e.g. RENAME of a
table the other run already renamed) and succeeds when run again. The SQL sticks to what
ClickHouse 18.16 (the local server) and current ClickHouse both accept;
``tests/unit/test_projection_sql.py`` checks the latter with chdb.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "sql"
SEND_RECEIVE_TIMEOUT = 30  # seconds; the driver's 300 s default turns a stuck query into a long hang
CONNECT_TIMEOUT = 5

_FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
#: A whole line ``-- when: <query>`` before a statement guards it (see the module doc).
GUARD_PREFIX = "-- when:"

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


class MigrationError(RuntimeError):
    """The migration files themselves are unusable (bad name, duplicate number)."""


@dataclass(frozen=True)
class Step:
    """One statement of a migration; with a ``when`` query it runs only if that query's first
    value is non-zero."""

    sql: str
    when: str | None = None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def statements(self, database: str) -> list[str]:
        """The file's statements with ``{db}`` replaced by ``database`` (guards left out)."""
        return [step.sql for step in self.steps(database)]

    def steps(self, database: str) -> list[Step]:
        """The file's statements and their guards, with ``{db}`` replaced by ``database``."""
        return parse_steps(render(self.sql, database))


def check_identifier(name: str) -> str:
    """A database or table name goes into SQL text as is, so it must be a plain identifier."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain ClickHouse identifier: {name!r}")
    return name


def render(sql: str, database: str) -> str:
    return sql.replace("{db}", check_identifier(database))


def split_statements(sql: str) -> list[str]:
    """Split on lines ending in ``;``, after dropping whole-line ``--`` comments."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = _STATEMENT_END.split("\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def parse_steps(sql: str) -> list[Step]:
    """Like :func:`split_statements`, keeping each ``-- when:`` guard with the statement after it.

    A guard is one whole line, directly before its statement (comment lines may sit between);
    a guard inside a statement, two guards for one statement, or a guard with no statement after
    it is a :class:`MigrationError`."""
    steps: list[Step] = []
    guard: str | None = None
    body: list[str] = []

    def finish() -> None:
        nonlocal guard
        text = "\n".join(body).strip()
        body.clear()
        if text:
            steps.append(Step(text, guard))
            guard = None

    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith(GUARD_PREFIX):
            if "\n".join(body).strip():
                raise MigrationError(f"a '{GUARD_PREFIX}' guard inside a statement: {stripped}")
            if guard is not None:
                raise MigrationError(f"two '{GUARD_PREFIX}' guards for one statement: {stripped}")
            guard = stripped[len(GUARD_PREFIX):].strip()
            if not guard:
                raise MigrationError(f"an empty '{GUARD_PREFIX}' guard")
            continue
        if stripped.startswith("--"):
            continue
        end = _STATEMENT_END.search(line)
        if end:
            body.append(line[:end.start()])
            finish()
        else:
            body.append(line)
    finish()
    if guard is not None:
        raise MigrationError(f"a '{GUARD_PREFIX}' guard with no statement after it: {guard}")
    return steps


def guard_holds(rows: Any) -> bool:
    """A guard query's answer: true when its first value is a non-zero number. Values may come
    as text (chdb's output), hence ``int(str(...))``."""
    rows = list(rows)
    return bool(rows) and bool(rows[0]) and int(str(rows[0][0])) != 0


def apply_steps(steps: list[Step], query: Callable[[str], Any]) -> list[Step]:
    """Run ``steps`` in order with ``query(sql) -> rows``; a guarded step runs only while its
    guard holds. Returns the steps that ran."""
    ran = []
    for step in steps:
        if step.when is not None and not guard_holds(query(step.when)):
            continue
        query(step.sql)
        ran.append(step)
    return ran


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 001_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}: {versions}")
    return sorted(migrations, key=lambda m: m.version)


def client(settings: Any, *, database: str | None = None) -> Client:
    """A clickhouse-driver client for ``settings`` (host, port, database).

    ``database`` overrides ``settings.clickhouse_database`` (``migrate`` connects to ``default``
    because its database may not exist yet). Optional ``clickhouse_user`` / ``clickhouse_password``
    attributes are honoured when the settings have them.
    """
    return Client(
        host=settings.clickhouse_host,
        port=int(settings.clickhouse_port),
        database=database or settings.clickhouse_database,
        user=getattr(settings, "clickhouse_user", None) or "default",
        password=getattr(settings, "clickhouse_password", None) or "",
        connect_timeout=CONNECT_TIMEOUT,
        send_receive_timeout=SEND_RECEIVE_TIMEOUT,
    )


def migrate(settings: Any, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Create ``settings.clickhouse_database`` and apply the pending migrations in order.

    Returns the names of the migrations applied by this call (empty when up to date).
    """
    db = check_identifier(settings.clickhouse_database)
    migrations = load_migrations(directory)
    conn = client(settings, database="default")
    try:
        conn.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        conn.execute(render(SCHEMA_MIGRATIONS_DDL, db))
        applied = {
            version: checksum
            for version, checksum in conn.execute(
                f"SELECT version, checksum FROM {db}.schema_migrations FINAL"
            )
        }
        done = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    log.warning(
                        "migration %s changed after it was applied; add a new migration instead",
                        migration.name,
                    )
                continue
            apply_steps(migration.steps(db), conn.execute)
            conn.execute(
                f"INSERT INTO {db}.schema_migrations (version, name, checksum, applied_at) VALUES",
                [(migration.version, migration.name, migration.checksum, datetime.now(UTC))],
            )
            log.info("applied migration %s to %s", migration.name, db)
            done.append(migration.name)
        return done
    finally:
        conn.disconnect()
