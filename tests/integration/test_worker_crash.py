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

from kafka.coordinator.assignors.range import RangePartitionAssignor

from processor.devstack import worker as worker_proc
from processor.producer import EventProducer
from processor.simulation import simulate

from .helpers import incentives, worker_log_tail


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
        if result.returncode == 0:
            return report
        if time.monotonic() > deadline:
            return report | {"worker_log_tail": worker_log_tail(settings)}
        time.sleep(3)


def _explain(report: dict) -> str:
    """A failed verification, readable: a sample of the differences per side, and the worker's log."""
    differences = report.get("differences", [])
    lines = [f"{len(differences)} differences, {report.get('events_applied')} events applied"]
    for side in ("clickhouse", "worker"):
        mine = [d for d in differences if f" {side}=" in d or d.startswith(side)]
        lines += [f"  [{side}: {len(mine)}]"] + [f"    {d}" for d in mine[:12]]
    lines += [f"  {d}" for d in differences if " clickhouse=" not in d and " worker=" not in d][:12]
    if "stderr" in report:
        lines.append(f"stderr: {report['stderr']}")
    lines.append("--- worker log (tail) ---")
    lines.append(report.get("worker_log_tail", ""))
    return "\n".join(lines)


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
    assert report.get("verified") is True, _explain(report)


def test_kill_and_lose_local_state_recovers_from_the_changelog(worker):
    producing = _stream(worker, "CRASH2", 20_000, seed=12)
    time.sleep(1.5)
    _kill_and_restart(worker, wipe_state=True)
    producing.join()
    report = _verified(worker)
    assert report.get("verified") is True, _explain(report)


class _SpeaksFaustsProtocol(RangePartitionAssignor):
    """The group's protocol is Faust's assignor ("faust"); joining it needs an assignor of that name."""
    name = "faust"


def _commit_group_offsets_to_end(settings) -> None:
    """What Faust's commit holes can do: the group's committed offsets jump past what state applied."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from processor import topics
    from processor.kafka_replay import read_log

    log = read_log(settings.kafka_bootstrap_servers)
    ends = {TopicPartition(topics.PARTNER_EVENTS, p): OffsetAndMetadata(records[-1][0] + 1, "", -1)
            for p, records in log.items() if records}
    # Join the group as a member (the broker refuses commits from outside it), then commit the ends.
    # Until the killed worker's session has expired, the group still speaks Faust's protocol: retry.
    deadline = time.monotonic() + 120
    while True:
        consumer = KafkaConsumer(topics.PARTNER_EVENTS, bootstrap_servers=settings.kafka_bootstrap_servers,
                                 group_id=settings.app_id, enable_auto_commit=False, session_timeout_ms=6000,
                                 heartbeat_interval_ms=2000, max_poll_records=1,
                                 partition_assignment_strategy=[_SpeaksFaustsProtocol])
        try:
            joined = time.monotonic() + 20
            while set(consumer.assignment()) != set(ends) and time.monotonic() < joined:
                consumer.poll(timeout_ms=500)
            if set(consumer.assignment()) == set(ends):
                consumer.commit(ends)
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        finally:
            consumer.close()
        assert time.monotonic() < deadline, "could not join the worker's consumer group"
        time.sleep(2)


def test_offsets_committed_ahead_of_state_are_read_again_from_the_state_watermark(worker):
    pid = worker_proc.running(worker)
    os.kill(pid, signal.SIGKILL)
    events = list(itertools.islice(simulate(seed=13, partners=20, prefix="AHEAD", start="2024-06-01T00:00:00Z"),
                                   3_000))
    with EventProducer(worker.kafka_bootstrap_servers) as producer:
        producer.send_many(events)
    _commit_group_offsets_to_end(worker)
    worker_proc.start(worker)
    report = _verified(worker)
    assert report.get("verified") is True, _explain(report)
