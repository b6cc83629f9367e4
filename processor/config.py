"""Configuration of the incentive processor, read from environment variables.

Every process of the project (the Faust worker, the CLI, the local stack, the tests) reads its
settings through :func:`load_settings`; nothing else looks at ``INCENTIVES_*`` variables.

===============================  =======================================  ============================
Variable                         Meaning                                  Default
===============================  =======================================  ============================
INCENTIVES_HOME                  state: logs, pid files, data             ./.incentives
INCENTIVES_KAFKA_PORT            port of the local broker (Tansu)         9092
INCENTIVES_KAFKA_BOOTSTRAP       bootstrap servers, host:port[,...]       127.0.0.1:{KAFKA_PORT}
INCENTIVES_CLICKHOUSE_HOST       ClickHouse host                          127.0.0.1
INCENTIVES_CLICKHOUSE_PORT       ClickHouse native (TCP) port             9000
INCENTIVES_CLICKHOUSE_HTTP_PORT  ClickHouse HTTP port                     8123
INCENTIVES_CLICKHOUSE_DATABASE   database of the projections              incentives
INCENTIVES_CLICKHOUSE_USER       ClickHouse user                          default
INCENTIVES_CLICKHOUSE_PASSWORD   ClickHouse password                      (empty)
INCENTIVES_WEB_HOST              bind address of the worker's web server  127.0.0.1
INCENTIVES_WEB_PORT              worker web port (/metrics, /ready)       6066
INCENTIVES_WORKER_DIR            the worker's directory (data, log, pid)  $INCENTIVES_HOME/worker
INCENTIVES_SINK_IN_WORKER        run the ClickHouse sink in the worker    true (1/0, true/false)
INCENTIVES_SINK_PORT             `incentives sink`'s /metrics port        6065
INCENTIVES_PARTITIONS            partitions of every topic                4
INCENTIVES_PROGRAM               program rules (YAML)                     deploy/programs/default.yaml
INCENTIVES_APP_ID                Faust app id (group, changelog prefix)   incentives
INCENTIVES_BATCH_WAIT_MS         longest a backed-up stage fills a batch  1000
INCENTIVES_BATCH_LINGER_MS       a stage's wait for more after an event   10
INCENTIVES_MAX_MESSAGE_BYTES     largest record the worker produces       1000000
INCENTIVES_CONSOLE_HOST          bind address of the analysts' console    127.0.0.1
INCENTIVES_CONSOLE_PORT          port of the analysts' console            8088
INCENTIVES_CONSOLE_USERS         console users file (scrypt hashes)       deploy/console-users.yaml
INCENTIVES_WRITER_SCHEMAS        more known writer schemas: directories   (none)
                                 of ``*.avsc``, ``os.pathsep``-separated
===============================  =======================================  ============================

A relative `INCENTIVES_HOME` or `INCENTIVES_WORKER_DIR` is taken from the current directory, a
relative `INCENTIVES_PROGRAM`, `INCENTIVES_CONSOLE_USERS` or directory of `INCENTIVES_WRITER_SCHEMAS`
from the repository root.

`INCENTIVES_WRITER_SCHEMAS` names writer schemas that are not (yet) in `schemas/`, e.g. those of an
upstream producer upgraded before this processor: `processor.codec` registers every ``*.avsc`` in
them as a known writer, exactly like `schemas/history/` (read into the current schema of the same
record; refused at start-up when resolution cannot bridge). The codec builds its default registry
once, at import, from :func:`writer_schema_dirs`, so every process that decodes (worker, sink,
`replay --source kafka`) honours the variable of its own environment.

The ClickHouse sink runs inside the worker unless `INCENTIVES_SINK_IN_WORKER` is false; then it runs
as its own process, `incentives sink` (`incentives dev up` starts it so, and its workers with the
setting off). `incentives dev up --workers N` gives worker i (1-based) the web port
`INCENTIVES_WEB_PORT + i - 1` and the directory `INCENTIVES_WORKER_DIR` (i = 1) or
`INCENTIVES_WORKER_DIR-<i>`. The sink's default port, 6065, sits below the workers' range, so that
worker 2's 6067 never collides with it.

Example::

    INCENTIVES_KAFKA_PORT=19092 INCENTIVES_WEB_PORT=16066 incentives dev up
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

#: Root of the repository (the directory holding ``processor/`` and ``deploy/``).
REPO_ROOT = Path(__file__).resolve().parent.parent

ENV_PREFIX = "INCENTIVES_"

DEFAULT_HOME = ".incentives"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_CLICKHOUSE_HOST = "127.0.0.1"
DEFAULT_CLICKHOUSE_PORT = 9000
DEFAULT_CLICKHOUSE_HTTP_PORT = 8123
DEFAULT_CLICKHOUSE_DATABASE = "incentives"
DEFAULT_CLICKHOUSE_USER = "default"
DEFAULT_CLICKHOUSE_PASSWORD = ""
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 6066
DEFAULT_WORKER_DIR = "worker"          # under INCENTIVES_HOME
DEFAULT_SINK_IN_WORKER = True
DEFAULT_SINK_PORT = 6065
DEFAULT_PARTITIONS = 4
DEFAULT_PROGRAM = "deploy/programs/default.yaml"
DEFAULT_APP_ID = "incentives"
DEFAULT_BATCH_WAIT_MS = 1000
DEFAULT_BATCH_LINGER_MS = 10
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
DEFAULT_CONSOLE_HOST = "127.0.0.1"
DEFAULT_CONSOLE_PORT = 8088
DEFAULT_CONSOLE_USERS = "deploy/console-users.yaml"
WRITER_SCHEMAS = ENV_PREFIX + "WRITER_SCHEMAS"


class ConfigError(ValueError):
    """An environment variable has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """All settings of one process. Build with :func:`load_settings`; derive variants with
    :meth:`replace` (e.g. other ports for tests)."""

    home: Path
    kafka_port: int
    kafka_bootstrap: str
    clickhouse_host: str
    clickhouse_port: int
    clickhouse_http_port: int
    clickhouse_database: str
    clickhouse_user: str
    clickhouse_password: str
    web_host: str
    web_port: int
    partitions: int
    program: Path
    app_id: str
    #: a stage agent takes up to 10,000 events. After a batch's first event it waits this long for
    #: more, and goes when that brought few (a quiet stream: an event waits no longer than this at
    #: each stage); while each wait brings many (a backlog) it keeps filling the batch, for up to
    #: `batch_wait_ms`: larger batches amortise the per-batch costs (state records, changelog,
    #: producer round trips). `processor/stream/batching.py`
    batch_linger_ms: int
    batch_wait_ms: int
    #: the producer's maximum request size (a record over it is refused; brokers have a similar
    #: limit). Every state record is far below it by design; one over it stops the worker with an
    #: error naming the record, before anything that depends on it is committed
    max_message_bytes: int
    #: the analysts' web console (`incentives console`): loopback by default, since it can resolve
    #: alerts; the users file holds salted scrypt hashes and is not committed
    console_host: str
    console_port: int
    console_users: Path
    #: the worker's own directory: its RocksDB state (``data/``), log and pid file. Each worker of
    #: a group on one machine needs its own (``incentives dev up --workers N`` sets it per worker)
    worker_dir: Path
    #: run the ClickHouse sink as a task of the worker (true: a bare worker projects into
    #: ClickHouse on its own) or not (false: `incentives sink` runs it as its own process)
    sink_in_worker: bool
    #: the port of `incentives sink`'s Prometheus ``/metrics``
    sink_port: int
    #: directories of more known *writer* schemas (``*.avsc``), registered like `schemas/history/`
    #: (the codec reads them through :func:`writer_schema_dirs` when it builds its registry)
    writer_schemas: tuple[Path, ...]

    # ----------------------------------------------------------------- derived values
    @property
    def kafka_broker_url(self) -> str:
        """The bootstrap servers as Faust wants them: ``kafka://h1:p1;h2:p2``."""
        return "kafka://" + ";".join(s.strip() for s in self.kafka_bootstrap.split(",") if s.strip())

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        """The bootstrap servers as kafka-python / aiokafka want them."""
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    @property
    def clickhouse_http_url(self) -> str:
        return f"http://{self.clickhouse_host}:{self.clickhouse_http_port}"

    @property
    def web_url(self) -> str:
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "") else self.web_host
        return f"http://{host}:{self.web_port}"

    @property
    def console_url(self) -> str:
        host = "127.0.0.1" if self.console_host in ("0.0.0.0", "") else self.console_host
        return f"http://{host}:{self.console_port}"

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed. Changing ``kafka_port`` alone also moves
        ``kafka_bootstrap`` when that was the default ``127.0.0.1:{old port}``; changing ``home``
        alone also moves ``worker_dir`` when that was the default ``{old home}/worker``."""
        if (
            "kafka_port" in changes
            and "kafka_bootstrap" not in changes
            and self.kafka_bootstrap == f"127.0.0.1:{self.kafka_port}"
        ):
            changes["kafka_bootstrap"] = f"127.0.0.1:{changes['kafka_port']}"
        if "home" in changes and "worker_dir" not in changes and self.worker_dir == self.home / DEFAULT_WORKER_DIR:
            changes["worker_dir"] = Path(str(changes["home"])) / DEFAULT_WORKER_DIR
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_env(self) -> dict[str, str]:
        """These settings as ``INCENTIVES_*`` variables (absolute paths, booleans as 1/0), for
        child processes: ``load_settings(settings.as_env()) == settings``."""
        def text(value: object) -> str:
            if isinstance(value, tuple):
                return os.pathsep.join(str(v) for v in value)
            return ("1" if value else "0") if isinstance(value, bool) else str(value)

        return {ENV_PREFIX + f.name.upper(): text(getattr(self, f.name)) for f in fields(self)}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(ENV_PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} must be positive")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value > 65535:
        raise ConfigError(f"{ENV_PREFIX}{name}={value} is not a TCP port (1-65535)")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(ENV_PREFIX + name)
    return default if raw is None or raw.strip() == "" else raw.strip()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(ENV_PREFIX + name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def writer_schema_dirs(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The directories of ``INCENTIVES_WRITER_SCHEMAS`` (default ``os.environ``), absolute (a relative
    one from the repository root), in order, empty entries skipped. Whether they exist and hold
    usable schemas is the codec's check, when it registers them."""
    env = os.environ if env is None else env
    dirs = []
    for raw in env.get(WRITER_SCHEMAS, "").split(os.pathsep):
        if raw.strip():
            path = Path(raw.strip()).expanduser()
            dirs.append((path if path.is_absolute() else REPO_ROOT / path).resolve())
    return tuple(dict.fromkeys(dirs))


def load_settings(env: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Read the settings from ``env`` (default ``os.environ``). Relative ``INCENTIVES_HOME`` and
    ``INCENTIVES_WORKER_DIR`` are resolved against ``cwd`` (default: the current directory), a
    relative ``INCENTIVES_PROGRAM`` against the repository root. Raises :class:`ConfigError` on unusable values."""
    env = os.environ if env is None else env
    base = Path.cwd() if cwd is None else Path(cwd)

    home = Path(_str(env, "HOME", DEFAULT_HOME)).expanduser()
    if not home.is_absolute():
        home = base / home

    program = Path(_str(env, "PROGRAM", DEFAULT_PROGRAM)).expanduser()
    if not program.is_absolute():
        program = REPO_ROOT / program

    console_users = Path(_str(env, "CONSOLE_USERS", DEFAULT_CONSOLE_USERS)).expanduser()
    if not console_users.is_absolute():
        console_users = REPO_ROOT / console_users

    home = home.resolve()
    worker_dir = Path(_str(env, "WORKER_DIR", str(home / DEFAULT_WORKER_DIR))).expanduser()
    if not worker_dir.is_absolute():
        worker_dir = base / worker_dir

    kafka_port = _port(env, "KAFKA_PORT", DEFAULT_KAFKA_PORT)
    return Settings(
        home=home,
        kafka_port=kafka_port,
        kafka_bootstrap=_str(env, "KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
        clickhouse_host=_str(env, "CLICKHOUSE_HOST", DEFAULT_CLICKHOUSE_HOST),
        clickhouse_port=_port(env, "CLICKHOUSE_PORT", DEFAULT_CLICKHOUSE_PORT),
        clickhouse_http_port=_port(env, "CLICKHOUSE_HTTP_PORT", DEFAULT_CLICKHOUSE_HTTP_PORT),
        clickhouse_database=_str(env, "CLICKHOUSE_DATABASE", DEFAULT_CLICKHOUSE_DATABASE),
        clickhouse_user=_str(env, "CLICKHOUSE_USER", DEFAULT_CLICKHOUSE_USER),
        # an empty password is a valid value: take it as given
        clickhouse_password=env.get(ENV_PREFIX + "CLICKHOUSE_PASSWORD", DEFAULT_CLICKHOUSE_PASSWORD),
        web_host=_str(env, "WEB_HOST", DEFAULT_WEB_HOST),
        web_port=_port(env, "WEB_PORT", DEFAULT_WEB_PORT),
        partitions=_int(env, "PARTITIONS", DEFAULT_PARTITIONS),
        program=program.resolve(),
        app_id=_str(env, "APP_ID", DEFAULT_APP_ID),
        batch_linger_ms=_int(env, "BATCH_LINGER_MS", DEFAULT_BATCH_LINGER_MS),
        batch_wait_ms=_int(env, "BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS),
        max_message_bytes=_int(env, "MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
        console_host=_str(env, "CONSOLE_HOST", DEFAULT_CONSOLE_HOST),
        console_port=_port(env, "CONSOLE_PORT", DEFAULT_CONSOLE_PORT),
        console_users=console_users.resolve(),
        worker_dir=worker_dir.resolve(),
        sink_in_worker=_bool(env, "SINK_IN_WORKER", DEFAULT_SINK_IN_WORKER),
        sink_port=_port(env, "SINK_PORT", DEFAULT_SINK_PORT),
        writer_schemas=writer_schema_dirs(env),
    )
