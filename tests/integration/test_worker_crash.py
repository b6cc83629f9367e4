"""Kill -9 the worker in the middle of a stream: after a restart every balance is still exact.

The proof is the auditor's own check: `incentives replay --source kafka --verify` folds the recorded
log with the domain core and must find no difference with the worker's state and ClickHouse's
ledger (balances, entry counts, ledger heads and every hash in the chain).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import threading
import time

from processor.devstack import worker as worker_proc
from processor.producer import EventProducer
from processor.simulation import simulate

from .helpers import incentives


def _stream(settings, prefix: str, count: int, seed: int) -> threading.Thread:
    events = list(itertools.islice(simulate(seed=seed, partners=40, prefix=prefix,
                                            start="2025-03-01T00:00:00Z", minutes_per_event=6), count))

    def produce() -> None:
        with EventProducer(settings.kafka_bootstrap_servers) as producer:
            for i in range(0, len(events), 500):
                producer.send_many(events[i:i + 500])
                producer.flush()
                time.sleep(0.05)          # ~10k events/s: the worker is busy when it dies

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def _verified(settings, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = incentives(settings, "replay", "--source", "kafka", "--verify", "--json")
        report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {"stderr": result.stderr}
        if result.returncode == 0 or time.monotonic() > deadline:
            return report
        time.sleep(3)


def _kill_and_restart(settings, wipe_state: bool) -> None:
    pid = worker_proc.running(settings)
    assert pid, "the session worker should be running"
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    if wipe_state:            # a new machine: state must come back from the changelog topics
        shutil.rmtree(settings.home / "worker" / "data", ignore_errors=True)
    worker_proc.start(settings)


def test_kill_minus_nine_mid_stream_loses_and_doubles_nothing(worker):
    producing = _stream(worker, "CRASH1", 20_000, seed=11)
    time.sleep(1.5)
    _kill_and_restart(worker, wipe_state=False)
    producing.join()
    report = _verified(worker)
    assert report.get("verified") is True, report
    assert report["differences"] == []


def test_kill_and_lose_local_state_recovers_from_the_changelog(worker):
    producing = _stream(worker, "CRASH2", 20_000, seed=12)
    time.sleep(1.5)
    _kill_and_restart(worker, wipe_state=True)
    producing.join()
    report = _verified(worker)
    assert report.get("verified") is True, report
    assert report["differences"] == []
