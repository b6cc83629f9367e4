"""Start, find and stop background processes by pid file.

A pid file holds one pid. A process counts as ours only when that pid is alive (not a zombie)
and its command line contains the component's marker (e.g. ``clickhouse-server``), so a pid
recycled by an unrelated process after a reboot is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartError(RuntimeError):
    """A component did not start or did not become ready."""


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (avoids zombies in long test runs)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        # no /proc (not Linux): fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # the state is the first field after the command name in parentheses
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"Z", b"X"):
        _reap(pid)
        return False
    return True


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and its command line contains ``marker``;
    otherwise None, and a stale pid file is removed."""
    pid = read_pid(pid_file)
    if pid is None:
        if pid_file.exists():
            pid_file.unlink(missing_ok=True)
        return None
    if pid_alive(pid) and marker in cmdline(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in its own session (a Ctrl-C in the terminal does not reach it), stdout and
    stderr appended to ``log_file``, and write its pid to ``pid_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_file)
    return proc


def stop_pid(pid: int, *, timeout: float = 20.0, name: str = "process") -> str:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns ``"stopped"``,
    ``"killed"`` or ``"not running"``."""
    if not pid_alive(pid):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return "stopped"
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return "killed"
        time.sleep(0.05)
    raise RuntimeError(f"{name} (pid {pid}) survived SIGKILL")


def stop_pid_file(pid_file: Path, marker: str, *, timeout: float = 20.0, name: str = "process") -> str:
    """Stop the process recorded in ``pid_file`` (only if it is ours) and remove the pid file."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return "not running"
    result = stop_pid(pid, timeout=timeout, name=name)
    pid_file.unlink(missing_ok=True)
    return result


def log_tail(log_file: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log_file: Path | None = None,
    interval: float = 0.1,
) -> float:
    """Poll ``ready()`` until it is true; returns the seconds waited. Raises :class:`StartError`
    with the tail of ``log_file`` if ``proc`` exits first or the timeout passes."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            raise StartError(
                f"{what} exited with code {proc.returncode} before it was ready"
                + _tail_note(log_file)
            )
        if time.monotonic() >= deadline:
            raise StartError(f"{what} was not ready after {timeout:.0f} s" + _tail_note(log_file))
        time.sleep(interval)


def _tail_note(log_file: Path | None) -> str:
    if log_file is None:
        return ""
    tail = log_tail(log_file)
    return f"\n--- last lines of {log_file} ---\n{tail}" if tail else f" (log {log_file} is empty)"
