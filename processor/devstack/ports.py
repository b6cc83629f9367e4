"""Is a TCP port free? A clear error when a port the stack wants is taken by something else.

``find_conflicts`` is pure: the probe is passed in, so it is tested without sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PortWanted:
    """A port one component of the stack needs. ``env_var`` is the setting that moves it."""

    component: str
    host: str
    port: int
    env_var: str = ""


class PortInUseError(RuntimeError):
    """A port the stack wants is already taken by a process the stack did not start."""

    def __init__(self, conflicts: list[PortWanted]):
        self.conflicts = conflicts
        super().__init__(format_conflicts(conflicts))


def port_in_use(host: str, port: int, timeout: float = 0.3) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_conflicts(
    wanted: Iterable[PortWanted], in_use: Callable[[str, int], bool] = port_in_use
) -> list[PortWanted]:
    """The wanted ports for which ``in_use(host, port)`` is true, in the given order."""
    return [w for w in wanted if in_use(w.host, w.port)]


def format_conflicts(conflicts: list[PortWanted]) -> str:
    lines = []
    for c in conflicts:
        hint = f"; stop that process or choose another port with {c.env_var}" if c.env_var else ""
        lines.append(
            f"{c.component}: port {c.host}:{c.port} is already in use by a process this stack did not "
            f"start{hint}"
        )
    return "\n".join(lines)


def check_ports_free(
    wanted: Iterable[PortWanted], in_use: Callable[[str, int], bool] = port_in_use
) -> None:
    """Raise :class:`PortInUseError` naming every wanted port that is already taken."""
    conflicts = find_conflicts(wanted, in_use)
    if conflicts:
        raise PortInUseError(conflicts)
