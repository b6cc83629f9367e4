"""``incentives sink``: the ClickHouse sink as its own process (SPEC section 10)."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from processor.config import ConfigError, Settings, load_settings

#: the exit code when a log went backwards (the worker's `crash_stop` uses the same)
EXIT_LOG_WENT_BACKWARDS = 70

log = logging.getLogger("processor.cli.sink")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@click.command("sink")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind address of the Prometheus /metrics server (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port of /metrics (default INCENTIVES_SINK_PORT, 6065).")
@click.option("-l", "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log level (to standard error).")
def sink(host: str, port: int | None, log_level: str) -> None:
    """Run the ClickHouse sink as its own process.

    Reads partner-events and every output topic in its own consumer group (<app id>-sink) and
    writes them into ClickHouse, committing offsets only after ClickHouse has each batch (it keeps
    retrying while ClickHouse is down). Serves Prometheus metrics on /metrics (the sink's counters
    and incentives_sink_lag). Run the workers with INCENTIVES_SINK_IN_WORKER=0 next to it, or
    they sink too (harmless, the writes are idempotent, but twice the work). `incentives dev up`
    starts it for you.

    SIGTERM or SIGINT stops it cleanly: the batch in hand is finished (or, if ClickHouse does not
    take it within 10 s, left uncommitted) and the consumer leaves the group. A log that went
    backwards (the broker lost it, offsets reset) is logged CRITICAL and the process exits 70.

    \b
    Example:
      INCENTIVES_SINK_IN_WORKER=0 faust -A processor.stream.app worker -l warn &
      incentives sink                 # metrics on http://127.0.0.1:6065/metrics
    """
    settings = _settings()
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka"):      # aiokafka builds DEBUG records per fetch otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.exit(serve(settings, host=host, port=port or settings.sink_port))


def serve(settings: Settings, *, host: str, port: int) -> int:
    """Run the sink with /metrics on host:port until SIGTERM/SIGINT; returns the exit code."""
    from prometheus_client import start_http_server

    from processor.programs import load_program
    from processor.stream import quiet_logs
    from processor.stream.sink_runner import SinkHalted

    program = load_program(str(settings.program))
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as e:
        log.error("cannot serve /metrics on %s:%s: %s (choose another port with INCENTIVES_SINK_PORT)",
                  host, port, e)
        return 1
    quiet_logs.install()
    log.info("ClickHouse sink: group %s-sink, ClickHouse %s:%s database %s, metrics on http://%s:%s/metrics",
             settings.app_id, settings.clickhouse_host, settings.clickhouse_port, settings.clickhouse_database,
             host, port)
    try:
        asyncio.run(_run(settings, program))
    except SinkHalted as e:
        log.critical("%s: stopping the sink process (exit %d) so that nothing is skipped or read again. "
                     "Reset the sink group's offsets (and the projections) explicitly, then restart.",
                     e, EXIT_LOG_WENT_BACKWARDS)
        return EXIT_LOG_WENT_BACKWARDS
    finally:
        server.shutdown()
    return 0


async def _run(settings: Settings, program: object) -> None:
    from processor.stream.sink_runner import run_sink

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_sink(settings, program, stop)
