"""The local ClickHouse server: Debian's ``clickhouse-server`` 18.16, run directly (no systemd).

``config.xml`` and ``users.xml`` are written from ``deploy/clickhouse/*.xml.tmpl`` into
``$INCENTIVES_HOME/clickhouse/`` together with the data, tmp and log directories; the server
listens on loopback only (native ``INCENTIVES_CLICKHOUSE_PORT``, HTTP
``INCENTIVES_CLICKHOUSE_HTTP_PORT``). It runs as root with this config (see STACK.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

from processor.config import REPO_ROOT, Settings
from processor.devstack import proc
from processor.devstack.ports import PortWanted, check_ports_free

NAME = "clickhouse"
SERVER_BIN = "/usr/sbin/clickhouse-server"
CLIENT_BIN = "/usr/bin/clickhouse-client"
LISTEN_HOST = "127.0.0.1"
TEMPLATE_DIR = REPO_ROOT / "deploy" / "clickhouse"
READY_TIMEOUT = 60.0
SUBDIRS = ("data", "tmp", "user_files", "log", "format_schemas")


def directory(settings: Settings) -> Path:
    return settings.home / "clickhouse"


def config_file(settings: Settings) -> Path:
    return directory(settings) / "config.xml"


def pid_file(settings: Settings) -> Path:
    return directory(settings) / "clickhouse.pid"


def log_file(settings: Settings) -> Path:
    """stdout/stderr of the server; its own logs are ``log/server.log`` and ``log/server.err.log``."""
    return directory(settings) / "log" / "stdout.log"


def marker(settings: Settings) -> str:
    """What the command line of our server contains: its own config file."""
    return f"--config-file={config_file(settings)}"


def address(settings: Settings) -> str:
    return (f"native {LISTEN_HOST}:{settings.clickhouse_port}, "
            f"http http://{LISTEN_HOST}:{settings.clickhouse_http_port}")


def wanted_ports(settings: Settings) -> list[PortWanted]:
    return [
        PortWanted(f"{NAME} native", LISTEN_HOST, settings.clickhouse_port, "INCENTIVES_CLICKHOUSE_PORT"),
        PortWanted(f"{NAME} http", LISTEN_HOST, settings.clickhouse_http_port,
                   "INCENTIVES_CLICKHOUSE_HTTP_PORT"),
    ]


def installed() -> bool:
    return os.access(SERVER_BIN, os.X_OK)


def ensure_installed() -> None:
    """Install ``clickhouse-server`` and ``clickhouse-client`` from Debian if the server binary is
    missing (needs root; installing starts no daemon)."""
    if installed() and os.access(CLIENT_BIN, os.X_OK):
        return
    if shutil.which("apt-get") is None:
        raise proc.StartError(f"{SERVER_BIN} is missing and apt-get is not available to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends",
                  "clickhouse-server", "clickhouse-client"]):
        result = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise proc.StartError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                                  f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if not installed():
        raise proc.StartError(f"apt-get installed clickhouse-server but {SERVER_BIN} is still missing")


def render_config(settings: Settings, template_dir: Path = TEMPLATE_DIR) -> dict[str, str]:
    """The text of config.xml and users.xml for these settings (pure)."""
    values = {
        "ch_home": str(directory(settings)),
        "listen_host": LISTEN_HOST,
        "tcp_port": str(settings.clickhouse_port),
        "http_port": str(settings.clickhouse_http_port),
    }
    return {
        name: Template((template_dir / f"{name}.tmpl").read_text()).substitute(values)
        for name in ("config.xml", "users.xml")
    }


def write_config(settings: Settings) -> Path:
    """Create the directories and write config.xml and users.xml. Returns the config path."""
    home = directory(settings)
    for sub in SUBDIRS:
        (home / sub).mkdir(parents=True, exist_ok=True)
    for name, text in render_config(settings).items():
        (home / name).write_text(text)
    return config_file(settings)


def running(settings: Settings) -> int | None:
    return proc.running_pid(pid_file(settings), marker(settings))


def ping(settings: Settings, timeout: float = 1.0) -> bool:
    url = f"http://{LISTEN_HOST}:{settings.clickhouse_http_port}/ping"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200 and resp.read().strip() == b"Ok."
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(settings: Settings) -> int:
    """Start the server (the caller checked it is not running) and wait for HTTP ``/ping``.
    Returns its pid."""
    if not installed():
        raise proc.StartError(
            f"{SERVER_BIN} is missing: run scripts/bootstrap.sh "
            "(apt-get install clickhouse-server clickhouse-client)"
        )
    check_ports_free(wanted_ports(settings))
    config = write_config(settings)
    argv = [SERVER_BIN, f"--config-file={config}"]
    p = proc.spawn(argv, log_file=log_file(settings), pid_file=pid_file(settings),
                   cwd=directory(settings))
    try:
        proc.wait_until(lambda: ping(settings), timeout=READY_TIMEOUT,
                        what=f"ClickHouse ({address(settings)})", proc=p,
                        log_file=directory(settings) / "log" / "server.err.log")
    except proc.StartError as e:
        proc.stop_pid(p.pid, timeout=10, name="ClickHouse")
        pid_file(settings).unlink(missing_ok=True)
        stdout_tail = proc.log_tail(log_file(settings), 20)
        if stdout_tail:
            raise proc.StartError(f"{e}\n--- last lines of {log_file(settings)} ---\n{stdout_tail}") from None
        raise
    return p.pid


def stop(settings: Settings, timeout: float = 30.0) -> str:
    return proc.stop_pid_file(pid_file(settings), marker(settings), timeout=timeout, name="ClickHouse")
