"""Small helpers of the integration tests: polling the live system until it has caught up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from processor.config import Settings
from projections.migrate import client


def wait_for(check: Callable[[], Any], expected: Any, timeout: float = 90.0, interval: float = 0.5) -> Any:
    """Poll `check()` until it returns `expected`; return the last value (the assert shows it)."""
    deadline = time.monotonic() + timeout
    value = check()
    while value != expected and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def ch_scalar(settings: Settings, sql: str) -> Any:
    rows = client(settings).execute(sql.format(db=settings.clickhouse_database))
    return rows[0][0] if rows else None


def worker_partners(settings: Settings) -> dict[str, Any]:
    with urllib.request.urlopen(f"{settings.web_url}/partners", timeout=30) as resp:
        return json.loads(resp.read())["partners"]


def incentives(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `incentives` CLI against the test stack, as a user would."""
    env = dict(os.environ)
    env.update(settings.as_env())
    return subprocess.run([sys.executable, "-m", "processor.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def worker_log_tail(settings: Settings, lines: int = 80) -> str:
    """The last lines of the session worker's log: what a failing test shows about the worker."""
    from processor.devstack import worker as worker_proc

    try:
        text = worker_proc.log_file(settings).read_text(errors="replace")
    except OSError as exc:
        return f"(no worker log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
