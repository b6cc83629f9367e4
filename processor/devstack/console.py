"""The analysts' console (``incentives console``), run as a background process of the local stack.

Started like the worker (``python -m processor.cli.main console`` with the settings as
``INCENTIVES_*`` variables; log and pid file in ``$INCENTIVES_HOME/console/``), ready when
``GET /healthz`` answers 200. On the first start with no users file, a first analyst ``analyst``
is created with a random password (issue 11, item 5: the demo prints where to sign in and how);
the password is also kept in ``$INCENTIVES_HOME/console/first-user.txt`` (owner-only), so a later
``dev up`` can print it again for as long as it is still that user's password.
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

NAME = "console"
MARKER = "processor.cli.main console"
FIRST_USER = "analyst"
READY_TIMEOUT = 30.0


def directory(settings: Settings) -> Path:
    return settings.home / "console"


def pid_file(settings: Settings) -> Path:
    return directory(settings) / "console.pid"


def log_file(settings: Settings) -> Path:
    return directory(settings) / "console.log"


def first_user_file(settings: Settings) -> Path:
    return directory(settings) / "first-user.txt"


def address(settings: Settings) -> str:
    return f"{settings.console_url} (analysts' console)"


def wanted_ports(settings: Settings) -> list[PortWanted]:
    return [PortWanted(NAME, _probe_host(settings), settings.console_port, "INCENTIVES_CONSOLE_PORT")]


def _probe_host(settings: Settings) -> str:
    return "127.0.0.1" if settings.console_host in ("0.0.0.0", "") else settings.console_host


def running(settings: Settings) -> int | None:
    return proc.running_pid(pid_file(settings), MARKER)


def argv(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "processor.cli.main", "console"]


def environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.as_env())
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def is_ready(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{settings.console_url}/healthz", timeout=2.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ensure_first_user(settings: Settings) -> tuple[str, str] | None:
    """Create ``analyst`` with a random password when the users file does not exist; returns the
    credentials to print (also when created earlier and still valid), else None."""
    from processor.console import users

    note = first_user_file(settings)
    if not settings.console_users.exists():
        password = users.generate_password()
        users.add_user(settings.console_users, FIRST_USER, password)
        note.parent.mkdir(parents=True, exist_ok=True)
        note.unlink(missing_ok=True)
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{FIRST_USER}\n{password}\n")
        return FIRST_USER, password
    try:
        name, password = note.read_text(encoding="utf-8").splitlines()[:2]
    except (OSError, ValueError):
        return None
    return (name, password) if users.authenticate(settings.console_users, name, password) else None


def credentials_line(settings: Settings, credentials: tuple[str, str] | None) -> str:
    if credentials is None:
        return (f"{'console':<11} sign in at {settings.console_url} with a user of {settings.console_users} "
                f"(add one: incentives console add-user NAME)")
    return f"{'console':<11} sign in at {settings.console_url} as {credentials[0]} / password {credentials[1]}"


def start(settings: Settings, timeout: float = READY_TIMEOUT) -> int:
    """Start the console (the caller checked it is not running) and wait until it answers."""
    check_ports_free(wanted_ports(settings))
    directory(settings).mkdir(parents=True, exist_ok=True)
    p = proc.spawn(argv(settings), log_file=log_file(settings), pid_file=pid_file(settings),
                   env=environment(settings), cwd=directory(settings))
    try:
        proc.wait_until(lambda: is_ready(settings), timeout=timeout, interval=0.2,
                        what=f"the console (port {settings.console_port})", proc=p, log_file=log_file(settings))
    except proc.StartError:
        proc.stop_pid(p.pid, timeout=10, name=NAME)
        pid_file(settings).unlink(missing_ok=True)
        raise
    return p.pid


def stop(settings: Settings, timeout: float = 30.0) -> str:
    return proc.stop_pid_file(pid_file(settings), MARKER, timeout=timeout, name=NAME)
