"""The ClickHouse sink (``incentives sink``), run as a background process of the local stack.

``python -m processor.cli.main sink --host 127.0.0.1`` with the settings as ``INCENTIVES_*``
variables (absolute paths); log and pid file in ``$INCENTIVES_HOME/sink/``. Ready when
``GET http://127.0.0.1:{INCENTIVES_SINK_PORT}/metrics`` answers 200. ``incentives dev up`` starts
it before the worker(s), which then run with ``INCENTIVES_SINK_IN_WORKER=0``.
"""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from processor.config import REPO_ROOT, Settings
from processor.devstack import proc
from processor.devstack.ports import PortWanted, check_ports_free

NAME = "sink"
MARKER = "processor.cli.main sink"
HOST = "127.0.0.1"
READY_TIMEOUT = 30.0


def directory(settings: Settings) -> Path:
    return settings.home / "sink"


def pid_file(settings: Settings) -> Path:
    return directory(settings) / "sink.pid"


def log_file(settings: Settings) -> Path:
    return directory(settings) / "sink.log"


def metrics_url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.sink_port}/metrics"


def address(settings: Settings) -> str:
    return f"{metrics_url(settings)} (ClickHouse sink)"


def wanted_ports(settings: Settings) -> list[PortWanted]:
    return [PortWanted(NAME, HOST, settings.sink_port, "INCENTIVES_SINK_PORT")]


def running(settings: Settings) -> int | None:
    return proc.running_pid(pid_file(settings), MARKER)


def argv(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "processor.cli.main", "sink", "--host", HOST, "--port", str(settings.sink_port)]


def environment(settings: Settings) -> dict[str, str]:
    """The caller's environment, plus the settings and the repository on PYTHONPATH."""
    env = dict(os.environ)
    env.update(settings.as_env())
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def is_ready(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(metrics_url(settings), timeout=2.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(settings: Settings, timeout: float = READY_TIMEOUT) -> int:
    """Start the sink (the caller checked it is not running) and wait until /metrics answers.
    Returns its pid. On failure it is stopped and the error shows the log's tail."""
    check_ports_free(wanted_ports(settings))
    directory(settings).mkdir(parents=True, exist_ok=True)
    p = proc.spawn(argv(settings), log_file=log_file(settings), pid_file=pid_file(settings),
                   env=environment(settings), cwd=directory(settings))
    try:
        proc.wait_until(lambda: is_ready(settings), timeout=timeout, interval=0.2,
                        what=f"the ClickHouse sink (port {settings.sink_port})", proc=p, log_file=log_file(settings))
    except proc.StartError:
        proc.stop_pid(p.pid, timeout=10, name=NAME)
        pid_file(settings).unlink(missing_ok=True)
        raise
    return p.pid


def stop(settings: Settings, timeout: float = 30.0) -> str:
    return proc.stop_pid_file(pid_file(settings), MARKER, timeout=timeout, name=NAME)
