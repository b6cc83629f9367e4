"""Partner state at production sizes, on the real broker and worker (issue 9, item 1).

A partner's history is stored as one record per entry (`processor/stream/partition_state.py`), so
no record grows with history: a partner with 20,000 sales is processed live, its state is removed
from the worker's disk and recovered from the changelog, and the auditor's replay agrees. A state
record that cannot be written stops the worker with an error naming it, before anything that
depends on it is committed; with the limit restored, the restarted worker converges.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta

from processor.codec import from_json_line
from processor.devstack import worker as worker_proc
from processor.kafka_replay import read_log
from processor.producer import EventProducer

from .helpers import wait_for, worker_log_tail, worker_partners
from .test_worker_crash import _explain, _verified

START = datetime(2025, 1, 1, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _events(pid: str, sales: int, minutes_apart: float) -> list[dict]:
    lines = [json.dumps({"event_id": f"{pid}-enrol", "event_type": "PartnerEnrolled", "partner_id": pid,
                         "occurred_at": _iso(START), "name": f"Partner {pid}", "segment": "strategic",
                         "region": "emea"})]
    for i in range(sales):
        lines.append(json.dumps({
            "event_id": f"{pid}-s{i}", "event_type": "SaleRecorded", "partner_id": pid,
            "occurred_at": _iso(START + timedelta(minutes=1 + i * minutes_apart)), "order_id": f"{pid}-O{i}",
            "customer_id": f"{pid}-C{i % 97}", "sku": f"SKU-{i % 13}", "category": "hardware", "quantity": 1,
            "amount_cents": 10_000 + (i % 50) * 100, "currency": "USD"}))
    return [from_json_line(line) for line in lines]


def _send(settings, events: list[dict]) -> None:
    with EventProducer(settings.kafka_bootstrap_servers) as producer:
        for i in range(0, len(events), 2_000):
            producer.send_many(events[i:i + 2_000])
        producer.flush()


def _entries(settings, pid: str) -> int | None:
    try:
        return worker_partners(settings).get(pid, {}).get("ledger_entries")
    except OSError:
        return None


def test_a_partner_with_20000_sales_is_applied_live_and_recovered_from_the_changelog(worker):
    pid = "BIG-P1"
    _send(worker, _events(pid, 20_000, minutes_apart=20))      # ~9 months of sales, ~3 an hour
    # each sale writes exactly one earn entry (amounts stay under the monthly cap)
    assert wait_for(lambda: _entries(worker, pid), 20_000, timeout=600, interval=2) == 20_000, worker_log_tail(worker)

    changelog = read_log(worker.kafka_bootstrap_servers, topic=f"{worker.app_id}-partner-state-changelog")
    sizes = [len(value or b"") for records in changelog.values() for _, value in records]
    print(f"\npartner-state changelog: {len(sizes):,} records, largest {max(sizes):,} bytes")
    assert max(sizes) < 64 * 1024, "a state record grows with the partner's history"

    worker_proc.stop(worker)
    shutil.rmtree(worker.home / "worker" / "data", ignore_errors=True)    # a new machine
    worker_proc.start(worker)
    assert wait_for(lambda: _entries(worker, pid), 20_000, timeout=300, interval=2) == 20_000, worker_log_tail(worker)
    report = _verified(worker)
    assert report.get("verified") is True, _explain(report)


def test_a_state_record_over_the_limit_stops_the_worker_and_a_restart_converges(worker):
    pid = "LIMIT-P1"
    worker_proc.stop(worker)
    # ledger entries (~700 bytes) still fit; the hour of 40 sales below (its sales record holds the
    # new and the previous value) outgrows 2,500 bytes after about 10 sales
    small = worker.replace(max_message_bytes=2_500)
    worker_proc.start(small)
    _send(worker, _events(pid, 40, minutes_apart=1))
    stopped = wait_for(lambda: worker_proc.running(worker) is None, True, timeout=120)
    log = worker_proc.log_file(worker).read_text(errors="replace")
    assert stopped, "the worker kept running after a state record could not be written\n" + log[-3000:]
    assert "over the producer limit of 2,500" in log and "partner-state-changelog" in log, log[-3000:]
    assert '"sales"' in log, log[-3000:]         # the error names the record that did not fit

    worker_proc.start(worker)                     # the limit restored
    assert wait_for(lambda: _entries(worker, pid), 40, timeout=120) == 40, worker_log_tail(worker)
    report = _verified(worker)
    assert report.get("verified") is True, _explain(report)


def test_a_log_that_went_backwards_stops_the_worker_naming_the_offsets(tmp_path, local_stack, make_stack_settings):
    """Issue 9, item 3: the broker loses its log while the worker runs (the local broker keeps it in
    memory); the new log's offsets restart at 0. The worker must stop with an error naming the topic,
    the partition and the offsets, not take the new events for redeliveries and drop them."""
    import itertools

    from processor.devstack import broker, stack
    from processor.simulation import simulate

    s = make_stack_settings(tmp_path / "home")
    stack.up(s, echo=lambda _line: None)
    try:
        events = list(itertools.islice(simulate(seed=5, partners=8, prefix="BACK", start="2025-01-01T00:00:00Z"),
                                       400))
        _send(s, events)
        assert wait_for(lambda: len(worker_partners(s)) >= 8, True, timeout=120), worker_log_tail(s)
        time.sleep(3)                                   # the batch's state is written
        broker.stop(s)
        # item 4: not ready while the broker is unreachable, and a quiet log meanwhile
        assert wait_for(lambda: worker_proc.ready_status(s), 503, timeout=20) == 503
        lines_before = len(worker_proc.log_file(s).read_text(errors="replace").splitlines())
        time.sleep(15)
        outage_lines = worker_proc.log_file(s).read_text(errors="replace").splitlines()[lines_before:]
        assert len(outage_lines) < 150, f"{len(outage_lines)} log lines in 15 s of outage:\n" + "\n".join(
            outage_lines[:40])
        broker.start(s)
        broker.create_topics(s.kafka_bootstrap_servers, s.partitions)
        _send(s, events[:50])                           # a new, shorter log
        stopped = wait_for(lambda: worker_proc.running(s) is None, True, timeout=120)
        log = worker_proc.log_file(s).read_text(errors="replace")
        assert stopped, "the worker kept running on a log that went backwards\n" + log[-3000:]
        # stage 1 or the sink (whichever sees it first) names the topic, the partition and the offsets
        stage1 = re.search(r"refusing to run: partner-events\[\d+\]: .*offset \d+|"
                           r"refusing to run: partner-events\[\d+\]: the state has applied offsets up to \d+", log)
        sink = re.search(r"[a-z-]+\[\d+\]: the log went backwards: the sink's committed offset \d+"
                         r".* high watermark is \d+", log)
        assert stage1 or sink, log[-3000:]
    finally:
        stack.down(s, echo=lambda _line: None)
