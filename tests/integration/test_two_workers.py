"""Two workers in one consumer group (`incentives dev up --workers 2`, SPEC sections 2 and 10).

A private stack started the way `dev up --workers 2` starts it (the sink as its own process, worker 1
and worker 2 on their own web ports and directories), a seeded simulated stream, worker 2 stopped
cleanly in the middle of it (SIGTERM: worker 1 takes every partition, a rebalance) and started
again (another rebalance, partitions and their state move back). Then the auditor's check over
both workers: `incentives replay --source kafka --verify` with both `--worker-url`s agrees with the
workers' state and with ClickHouse (balances, entry counts, ledger heads, every hash).
"""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import urllib.request

from processor.devstack import sink as sink_proc
from processor.devstack import stack
from processor.devstack import worker as worker_proc
from processor.devstack.ports import port_in_use
from processor.producer import EventProducer
from processor.simulation import simulate

from .helpers import incentives

EVENTS = 6_000


def _port_pair() -> int:
    """A free port p whose p + 1 is free too (worker 2 listens on INCENTIVES_WEB_PORT + 1)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and not port_in_use("127.0.0.1", port + 1):
            return port
    raise AssertionError("no two adjacent free ports")


def _stream(settings) -> threading.Thread:
    events = list(itertools.islice(simulate(seed=14, partners=30, prefix="TWO", start="2025-05-01T00:00:00Z",
                                            minutes_per_event=6), EVENTS))

    def produce() -> None:
        with EventProducer(settings.kafka_bootstrap_servers) as producer:
            for i in range(0, len(events), 200):
                producer.send_many(events[i:i + 200])
                producer.flush()
                time.sleep(0.25)          # ~800 events/s for ~8 s: both rebalances happen under load

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def _held(settings) -> list[int]:
    with urllib.request.urlopen(f"{settings.web_url}/partners", timeout=30) as resp:
        return list(json.loads(resp.read())["partitions"])


def _log_tails(*settings_list) -> str:
    out = []
    for s in settings_list:
        for name, path in (("worker", worker_proc.log_file(s)), ("sink", sink_proc.log_file(s))):
            try:
                lines = path.read_text(errors="replace").splitlines()[-30:]
            except OSError:
                continue
            out.append(f"--- {path} ({name}) ---\n" + "\n".join(lines))
    return "\n".join(out)


def test_two_workers_rebalance_twice_and_the_replay_agrees_with_both(tmp_path, local_stack, make_stack_settings):
    s = make_stack_settings(tmp_path / "home", web_port=_port_pair())
    try:
        pids = stack.up(s, workers=2, echo=lambda _line: None)
        assert {"sink", "worker", "worker-2"} <= set(pids)
        running = {st.name: st for st in stack.status(s, echo=None)}
        assert all(running[name].running for name in ("sink", "worker", "worker-2")), running
        w1, w2 = (worker_proc.instance_settings(s.replace(sink_in_worker=False), i) for i in (1, 2))
        assert (w2.web_port, w2.worker_dir) == (s.web_port + 1, s.home / "worker-2")
        sink_pid = sink_proc.running(s)

        producing = _stream(s)
        time.sleep(2)
        assert worker_proc.stop(w2) == "stopped"           # SIGTERM mid-stream: worker 1 takes over
        worker_proc.start(w2)                              # and gives partitions back
        producing.join()

        urls = ["--worker-url", w1.web_url, "--worker-url", w2.web_url]
        deadline = time.monotonic() + 150
        while True:
            result = incentives(s, "replay", "--source", "kafka", "--verify", "--json", *urls)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:] + _log_tails(w1, w2)
        report = json.loads(result.stdout)
        assert report["verified"] is True and report["partners"] >= 30
        # the replay in parallel processes gives the same document as one process
        one, two = (incentives(s, "replay", "--source", "kafka", "--json", "--ledger", "--jobs", jobs)
                    for jobs in ("1", "2"))
        assert one.returncode == two.returncode == 0, two.stderr[-2000:]
        assert json.loads(one.stdout) == json.loads(two.stdout) and json.loads(two.stdout)["partners"]
        held1, held2 = _held(w1), _held(w2)
        assert held1 and held2 and sorted(held1 + held2) == list(range(s.partitions)), (held1, held2)
        assert (w2.worker_dir / "data").is_dir()
        assert sink_proc.running(s) == sink_pid                # the sink ran on through both rebalances

        results = stack.down(s, echo=lambda _line: None)
        assert {k: results[k] for k in ("sink", "worker", "worker-2")} == {
            "sink": "stopped", "worker": "stopped", "worker-2": "stopped"}
        assert worker_proc.running(w2) is None and not worker_proc.pid_file(w2).exists()
    finally:
        stack.down(s, echo=lambda _line: None)
