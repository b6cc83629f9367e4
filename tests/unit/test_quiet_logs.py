"""Client log lines are rate limited (processor.stream.quiet_logs)."""
from __future__ import annotations

import logging

from processor.stream.quiet_logs import RateLimit


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, None, None)


def test_a_repeating_line_passes_once_per_interval_and_says_how_many_were_left_out(monkeypatch) -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0, 31.0])
    monkeypatch.setattr("processor.stream.quiet_logs.time.monotonic", lambda: next(clock))
    limit = RateLimit(interval=30.0)
    passed = [limit.filter(_record("Unable connect to node %s")) for _ in range(4)]
    assert passed == [True, False, False, False]
    last = _record("Unable connect to node %s")
    assert limit.filter(last) is True
    assert last.msg == "Unable connect to node %s (3 more like this in the last 31 s)"


def test_different_lines_do_not_silence_each_other() -> None:
    limit = RateLimit(interval=30.0)
    assert limit.filter(_record("a")) and limit.filter(_record("b"))
