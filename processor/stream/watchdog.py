"""A worker whose fetcher or stage agent has crashed stops, loudly, instead of running on without input.

Faust runs its fetcher (the task that hands fetched messages to the streams) and each agent as
services. When one crashes outside a rebalance, Faust logs "Crashed" and leaves it dead; the
process keeps answering `/ready` and its web pages while no message is applied any more, and its
lag grows with nothing else to show for it (found by `tests/integration/test_worker_crash.py`: a
fetcher crash mid-stream left the restarted worker's state behind for the rest of the test). So a
timer checks both every second, and a crash that lasts three checks in a row stops the process
like any other failure (`delivery.crash_stop`, exit 70): offsets stay where the state is, and the
restarted worker resumes from its watermark. A rebalance crashes and restarts the fetcher on
purpose; three checks and not during a rebalance leave that alone.
"""
from __future__ import annotations

import logging

from processor.stream.delivery import crash_stop
from processor.stream.wiring import app

log = logging.getLogger(__name__)

#: checks in a row a crash must last before the worker stops
CHECKS = 3
_seen = {"checks": 0}


def crashed_services() -> list[str]:
    """The names of the fetcher and the agents that are crashed now."""
    found = []
    fetcher = app._fetcher
    if fetcher.crashed:
        found.append(f"fetcher ({fetcher.crash_reason!r})")
    for name, agent in app.agents.items():
        if agent.crashed:
            found.append(f"agent {name} ({agent.crash_reason!r})")
    return found


def check() -> None:
    """One check (the timer below runs it every second)."""
    if app.should_stop or app.rebalancing:
        _seen["checks"] = 0
        return
    found = crashed_services()
    _seen["checks"] = _seen["checks"] + 1 if found else 0
    if _seen["checks"] >= CHECKS:
        log.critical("crashed and not restarted: %s", ", ".join(found))
        crash_stop("the worker's " + ", ".join(found))


@app.timer(interval=1.0)
async def watch_services() -> None:
    check()
