"""Rate-limited client logs: an unreachable broker must not write thousands of lines a minute.

aiokafka logs every failed connect, fetch and metadata refresh at ERROR, several times a second
per connection (a fault probe counted 6,300 lines in 30 s of broker outage). The numbers belong in
metrics and `/ready`; the log keeps the first line of each kind and then at most one every
`interval` seconds, saying how many were left out.
"""
from __future__ import annotations

import logging
import time

#: loggers whose records are rate limited (and their children)
NOISY = ("aiokafka", "kafka", "faust", "mode")


class RateLimit(logging.Filter):
    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[key] = (last, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this in the last {now - last:.0f} s)"
        self._seen[key] = (now, 0)
        return True


def install(interval: float = 30.0) -> RateLimit:
    """Filter every existing logger under `NOISY` (the client libraries create theirs at import)."""
    limit = RateLimit(interval)
    names = [name for name in logging.Logger.manager.loggerDict
             if name.split(".")[0] in NOISY]
    for name in [*NOISY, *names]:
        logger = logging.getLogger(name)
        if limit not in logger.filters:
            logger.addFilter(limit)
    return limit
