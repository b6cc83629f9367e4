"""The Faust workers of ``processor.stream.app``, run as background processes.

``python -m faust -A processor.stream.app worker -l warn --web-port {INCENTIVES_WEB_PORT}
--web-bind 127.0.0.1 --web-host 127.0.0.1``, with the settings passed down as ``INCENTIVES_*``
variables (absolute paths); state (``data/``), log and pid file in ``INCENTIVES_WORKER_DIR``
(default ``$INCENTIVES_HOME/worker/``). Ready when ``GET http://127.0.0.1:{web_port}/ready``
answers 200.

Several workers (``incentives dev up --workers N``) form one consumer group (the same app id):
worker i (1-based) is this module's functions called with ``instance_settings(settings, i)``, whose
web port is ``INCENTIVES_WEB_PORT + i - 1`` and whose directory is ``INCENTIVES_WORKER_DIR``
(i = 1) or ``INCENTIVES_WORKER_DIR-<i>``. Workers beyond the first are found again by their
directories (``instances``), so ``status`` and ``down`` need no count.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from processor.config import REPO_ROOT, Settings
from processor.devstack import proc
from processor.devstack.ports import PortWanted, check_ports_free, find_conflicts

NAME = "worker"
APP_MODULE = "processor.stream.app"
MARKER = f"-A {APP_MODULE} worker"
HOST = "127.0.0.1"
READY_TIMEOUT = 90.0
#: How long `start` waits for a port an exiting worker still holds before refusing it.
PORT_RELEASE_WAIT = 15.0
#: Faust accepts crit|error|warn|info|debug (``warning`` is rejected).
LOG_LEVEL = "warn"
#: The app serves ``/ready`` (200 once partitions are assigned, 503 before); only 200 counts.
#: True would also accept a 404 (an app without the page).
ACCEPT_MISSING_READY_PAGE = False


def directory(settings: Settings) -> Path:
    return settings.worker_dir


def instance_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index`` (1-based) of a group started from ``settings``."""
    if index < 1:
        raise ValueError(f"workers are numbered from 1, not {index}")
    if index == 1:
        return settings
    return settings.replace(web_port=settings.web_port + index - 1,
                            worker_dir=settings.worker_dir.with_name(f"{settings.worker_dir.name}-{index}"))


def instance_name(index: int) -> str:
    """``worker`` for the first worker, ``worker-<i>`` for the others (in status lines)."""
    return NAME if index == 1 else f"{NAME}-{index}"


def instance_indexes(settings: Settings, *, with_pid_file: bool = False) -> list[int]:
    """1, and every i > 1 whose directory ``INCENTIVES_WORKER_DIR-<i>`` exists (with a pid file
    in it, if ``with_pid_file``): the workers an earlier ``dev up --workers N`` started."""
    base = settings.worker_dir
    pattern = re.compile(re.escape(base.name) + r"-([0-9]+)")
    found = set()
    try:
        entries = list(base.parent.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and int(m.group(1)) > 1 and entry.is_dir():
            index = int(m.group(1))
            if not with_pid_file or pid_file(instance_settings(settings, index)).exists():
                found.add(index)
    return [1, *sorted(found)]


def instances(settings: Settings, count: int | None = None, *,
              with_pid_file: bool = True) -> list[tuple[str, Settings]]:
    """(name, settings) of workers 1..``count``, or, without a count, of worker 1 and every other
    worker with a pid file (``instance_indexes``)."""
    indexes = (list(range(1, count + 1)) if count is not None
               else instance_indexes(settings, with_pid_file=with_pid_file))
    return [(instance_name(i), instance_settings(settings, i)) for i in indexes]


def pid_file(settings: Settings) -> Path:
    return directory(settings) / "worker.pid"


def log_file(settings: Settings) -> Path:
    return directory(settings) / "worker.log"


def address(settings: Settings) -> str:
    return f"http://{HOST}:{settings.web_port} (/metrics, /ready)"


def wanted_ports(settings: Settings) -> list[PortWanted]:
    return [PortWanted(NAME, HOST, settings.web_port, "INCENTIVES_WEB_PORT")]


def running(settings: Settings) -> int | None:
    return proc.running_pid(pid_file(settings), MARKER)


def argv(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "faust", "-A", APP_MODULE, "worker",
        "-l", LOG_LEVEL,
        "--web-port", str(settings.web_port),
        "--web-bind", HOST,
        "--web-host", HOST,
    ]


def environment(settings: Settings) -> dict[str, str]:
    """The caller's environment, plus the settings and the repository on PYTHONPATH."""
    env = dict(os.environ)
    env.update(settings.as_env())
    env["INCENTIVES_WEB_HOST"] = HOST
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def ready_status(settings: Settings, timeout: float = 2.0) -> int | None:
    """HTTP status of ``/ready``, or None if nothing answers."""
    url = f"http://{HOST}:{settings.web_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def is_ready(settings: Settings) -> bool:
    status = ready_status(settings)
    return status == 200 or (ACCEPT_MISSING_READY_PAGE and status == 404)


def app_available() -> bool:
    try:
        return importlib.util.find_spec(APP_MODULE) is not None
    except ImportError:
        return False


def start(settings: Settings, timeout: float = READY_TIMEOUT) -> int:
    """Start the worker (the caller checked it is not running) and wait until ``/ready``.
    Returns its pid. On failure the worker is stopped and the error shows the log's tail."""
    if not app_available():
        raise proc.StartError(
            f"the Faust app module {APP_MODULE} "
            f"({REPO_ROOT / 'processor' / 'stream' / 'app.py'}) does not exist yet"
        )
    # a worker that just stopped (or was killed) can hold its web port for a moment while it exits
    deadline = time.monotonic() + PORT_RELEASE_WAIT
    while find_conflicts(wanted_ports(settings)) and time.monotonic() < deadline:
        time.sleep(0.2)
    check_ports_free(wanted_ports(settings))
    directory(settings).mkdir(parents=True, exist_ok=True)
    p = proc.spawn(argv(settings), log_file=log_file(settings), pid_file=pid_file(settings),
                   env=environment(settings), cwd=directory(settings))
    try:
        proc.wait_until(lambda: is_ready(settings), timeout=timeout, interval=0.25,
                        what=f"the Faust worker (web port {settings.web_port})", proc=p,
                        log_file=log_file(settings))
    except proc.StartError:
        proc.stop_pid(p.pid, timeout=10, name="worker")
        pid_file(settings).unlink(missing_ok=True)
        raise
    return p.pid


def stop(settings: Settings, timeout: float = 30.0) -> str:
    return proc.stop_pid_file(pid_file(settings), MARKER, timeout=timeout, name="worker")
