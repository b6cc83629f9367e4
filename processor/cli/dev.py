"""``incentives dev``: the local stack (Tansu broker, ClickHouse, the sink, the Faust workers) without Docker."""

from __future__ import annotations

import sys

import click

from processor.config import ConfigError, Settings, load_settings
from processor.devstack import stack


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@click.group("dev")
def dev() -> None:
    """Run the local stack: the Tansu broker, ClickHouse 18.16, the sink and the Faust worker(s).

    Every setting comes from INCENTIVES_* environment variables (see processor/config.py);
    state, logs and pid files go to $INCENTIVES_HOME (default ./.incentives).

    \b
    Example:
      incentives dev up && incentives dev status && incentives dev down
    """


@dev.command("up")
@click.option("--worker/--no-worker", "with_worker", default=True, show_default=True,
              help="Also start the ClickHouse sink (`incentives sink`) and the Faust worker(s).")
@click.option("--workers", "workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Faust workers in one consumer group; worker i listens on INCENTIVES_WEB_PORT + i - 1 "
                   "and keeps its state in $INCENTIVES_HOME/worker-<i> (worker 1: .../worker).")
@click.option("--migrate/--no-migrate", "with_migrations", default=True, show_default=True,
              help="Apply the ClickHouse migrations.")
@click.option("--console/--no-console", "with_console", default=True, show_default=True,
              help="Also start the analysts' console (a first user is created if there is none).")
def up(with_worker: bool, workers: int, with_migrations: bool, with_console: bool) -> None:
    """Start what is not running yet: broker, topics, ClickHouse, migrations, the ClickHouse sink,
    the worker(s), console.

    The sink runs as its own process (`incentives sink`, metrics on INCENTIVES_SINK_PORT) and the
    workers with INCENTIVES_SINK_IN_WORKER=0. With --workers N, N workers share the topics'
    partitions (INCENTIVES_PARTITIONS) in one consumer group. Components already running (pid
    file and live process) are left alone. Fails with a clear message if a port is taken by
    another process.

    \b
    Examples:
      incentives dev up
      incentives dev up --workers 2     # workers on 6066 and 6067, sink on 6065
      INCENTIVES_KAFKA_PORT=19092 INCENTIVES_WEB_PORT=16066 incentives dev up --no-worker
    """
    settings = _settings()
    try:
        stack.up(settings, with_worker=with_worker, workers=workers, with_migrations=with_migrations,
                 with_console=with_console, echo=click.echo)
    except stack.StackError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


@dev.command("status")
def status() -> None:
    """Show each component: running or stopped, pid, address (every worker started).

    Exits 0 when every component runs, 3 otherwise.

    \b
    Example:
      incentives dev status
    """
    result = stack.status(_settings(), echo=click.echo)
    sys.exit(0 if all(s.running for s in result) else 3)


@dev.command("down")
@click.option("--wipe", is_flag=True, help="Also delete the ClickHouse data and every worker's state.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
def down(wipe: bool, timeout: float) -> None:
    """Stop what `incentives dev up` started, every worker included (by pid; nothing else is touched).

    \b
    Examples:
      incentives dev down
      incentives dev down --wipe     # fresh ClickHouse next time, like the in-memory broker
    """
    stack.down(_settings(), wipe=wipe, timeout=timeout, echo=click.echo)
