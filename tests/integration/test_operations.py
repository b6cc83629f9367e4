"""What an operator reads must be true (issue 9, item 4): lag from start-up for every partition the
worker holds, the sink's lag, undecodable messages counted as undecodable, and `--verify` that
covers every worker of the group (each says which partitions it holds)."""
from __future__ import annotations

import re
import urllib.request

from processor import topics

from .helpers import incentives, wait_for


def _metrics(settings) -> str:
    with urllib.request.urlopen(f"{settings.web_url}/metrics", timeout=30) as resp:
        return resp.read().decode()


def _sink_metrics(settings) -> str:
    """The ClickHouse sink's own process (`incentives sink`, as `incentives dev up` runs it)."""
    from processor.devstack import sink as sink_proc

    with urllib.request.urlopen(sink_proc.metrics_url(settings), timeout=30) as resp:
        return resp.read().decode()


def _lag_partitions(text: str, metric: str, topic: str) -> set[str]:
    return set(re.findall(rf'^{metric}\{{partition="(\d+)",topic="{topic}"\}}', text, re.MULTILINE))


def test_consumer_lag_is_reported_for_every_held_partition_and_the_sink(worker):
    want = {str(p) for p in range(worker.partitions)}
    assert wait_for(lambda: _lag_partitions(_metrics(worker), "incentives_consumer_lag", topics.PARTNER_EVENTS),
                    want, timeout=30) == want
    assert wait_for(lambda: _lag_partitions(_sink_metrics(worker), "incentives_sink_lag", topics.PARTNER_EVENTS),
                    want, timeout=30) == want


def test_verify_needs_every_partition_covered_by_the_workers_given(worker):
    def verify() -> int:
        return incentives(worker, "replay", "--source", "kafka", "--verify", "--worker-url", worker.web_url).returncode

    assert wait_for(verify, 0, timeout=180, interval=3) == 0      # (the worker may still be catching up)
    # a worker that is not there: its partitions would be unchecked, and verify says so
    missing = incentives(worker, "replay", "--source", "kafka", "--verify", "--worker-url", worker.web_url,
                         "--worker-url", "http://127.0.0.1:9")
    assert missing.returncode == 1
    assert "cannot read its state at http://127.0.0.1:9/partners" in missing.stdout
