"""One chaos run: a local stack of its own, the plan's messages sent at a steady rate, the plan's
faults injected as the stream reaches them, the invariants watched throughout, then the oracle.

The stack (processor/devstack: broker, ClickHouse, the sink process, one worker, or two when a
fault moves partitions) lives in its own `$INCENTIVES_HOME` on free ports, so a run never touches
the dev stack. Faults run one after another in their own thread while the producer keeps sending:
- `worker-kill`: kill -9 a worker and start it again; every third strike kills it once more while
  it recovers (before it is ready);
- `sink-kill`: kill -9 the sink process and start it again (whether it was before or after an
  INSERT, or before or after its commit, is up to the moment);
- `clickhouse-down`: stop ClickHouse, wait, start it again;
- `rebalance`: stop worker 2 cleanly, wait, start it (a rebalance each way);
- `pause`: SIGSTOP worker 2 past the group's session timeout, then SIGCONT (its partitions moved;
  its late writes must not double-apply);
- `schema-mix`: nothing to do while running: the plan's stream carries `SaleRecorded` messages of
  a newer upstream writer (v2) from a seeded moment on; the line says what and from which message.
  The stack knows v2 as a writer: every process it starts gets `INCENTIVES_WRITER_SCHEMAS`
  (processor/chaos/schemas), and the oracle's replay uses the same registry;
- `broker-restart` (last): restart the in-memory broker, an empty log; the worker(s) and the sink
  must stop on their own with "went backwards" in their logs.
When everything is sent, the run waits until the worker state and ClickHouse agree with the replay
of the log (or a timeout), and `oracle.judge` decides.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import random
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from processor import topics
from processor.chaos import oracle, schema_mix
from processor.chaos.invariants import Watch
from processor.chaos.plan import Plan, Strike
from processor.codec import SchemaRegistry
from processor.config import Settings, load_settings
from processor.devstack import broker, clickhouse, sink, stack, worker
from processor.devstack.ports import port_in_use
from processor.kafka_replay import clickhouse_view, compare, read_log, worker_view
from processor.programs import load_program

Echo = Callable[[str], None]
SETTINGS_FILE = "chaos-settings.json"
# How the stages (log_check.LogWentBackwards) and the sink say that the log lost what they applied.
BACKWARDS = ("went backwards", "the log was lost", "the log no longer holds", "the log was recreated")
SESSION_TIMEOUT = 10.0              # the worker's broker_session_timeout (processor/stream/app.py)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_pair() -> int:
    """A port p with p + 1 free too (worker 2 listens on the web port + 1)."""
    for _ in range(50):
        (p,) = free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two adjacent free ports found")


def chaos_settings(home: Path, seed: int) -> Settings:
    kafka, ch_native, ch_http, sink_port = free_ports(4)
    return load_settings({
        "INCENTIVES_HOME": str(home), "INCENTIVES_KAFKA_PORT": str(kafka),
        "INCENTIVES_CLICKHOUSE_PORT": str(ch_native), "INCENTIVES_CLICKHOUSE_HTTP_PORT": str(ch_http),
        "INCENTIVES_WEB_PORT": str(_free_pair()), "INCENTIVES_SINK_PORT": str(sink_port),
        "INCENTIVES_CLICKHOUSE_DATABASE": "chaos", "INCENTIVES_APP_ID": f"incentives-chaos-{seed}",
        # the newer SaleRecorded writer of `schema-mix` (as_env passes it to every process started)
        "INCENTIVES_WRITER_SCHEMAS": str(schema_mix.SCHEMA_DIR),
    })


def stack_registry(settings: Settings) -> SchemaRegistry:
    """The schema registry the stack's processes build from their environment (`settings.as_env()`):
    the oracle's replay must read the log as they do."""
    return SchemaRegistry.from_directory(writers=settings.writer_schemas)


@dataclass
class Run:
    plan: Plan
    settings: Settings
    workers: int
    rate: float
    echo: Echo
    sent: int = 0
    #: the sender stops before passing this message number until the strike due there has started:
    #: a strike that runs long holds the stream at the next one's moment, never lets it run past
    gate: float = 0
    gate_moved: threading.Condition = field(default_factory=threading.Condition)
    done_sending: threading.Event = field(default_factory=threading.Event)
    fault_lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    registry: SchemaRegistry | None = None          # the stack's (stack_registry); None: the codec's default

    def worker_settings(self, index: int) -> Settings:
        return worker.instance_settings(self.settings.replace(sink_in_worker=False), index)

    @property
    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.worker_settings(i).web_port}" for i in range(1, self.workers + 1)]

    # ---------------------------------------------------------------------------------- sending

    def send_all(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all",
                                 linger_ms=5, retries=20, max_in_flight_requests_per_connection=1)
        try:
            partitions = sorted(producer.partitions_for(topics.PARTNER_EVENTS) or [])
            started = time.monotonic()
            for n, message in enumerate(self.plan.messages, 1):
                if n > self.gate:
                    with self.gate_moved:
                        self.gate_moved.wait_for(lambda n=n: n <= self.gate)    # type: ignore[misc]
                    started = time.monotonic() - (n - 1) / self.rate           # no burst to catch up
                if message.all_partitions:
                    for p in partitions:
                        producer.send(topics.PARTNER_EVENTS, key=b"*", value=message.value, partition=p)
                else:
                    producer.send(topics.PARTNER_EVENTS, key=message.key, value=message.value)
                self.sent = n
                ahead = n / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(120)
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            self.errors.append(f"producer: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                producer.close(timeout=30)
            self.done_sending.set()

    # ---------------------------------------------------------------------------------- faults

    def _open_gate(self, to: float) -> None:
        with self.gate_moved:
            self.gate = to
            self.gate_moved.notify_all()

    def strike_all(self, rng: random.Random) -> None:
        """Inject each strike when the stream reaches its moment. While one runs, messages keep
        flowing up to the next strike's moment (`gate`), so every strike happens under load and at
        its planned place in the stream, however long the one before took."""
        total = len(self.plan.messages)
        strikes = [s for s in self.plan.strikes if s.fault != "broker-restart"]
        dues = [s.message if s.message is not None else math.ceil(s.at * total) for s in strikes]
        self._open_gate(dues[0] if dues else float("inf"))
        for i, strike in enumerate(strikes):
            while self.sent < dues[i] and not self.done_sending.is_set():
                time.sleep(0.05)
            started, at = time.monotonic(), self.sent
            self._open_gate(dues[i + 1] if i + 1 < len(dues) else float("inf"))
            try:
                what = self._strike(strike, rng)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected fails the run
                what = f"FAILED: {type(exc).__name__}: {exc}"
                self.errors.append(f"{strike.fault} #{strike.number}: {what}")
            sent_during = self.sent - at
            if strike.message is not None:            # a fault in the stream: it is at its message exactly
                at = strike.message
            line = {"fault": strike.fault, "number": strike.number, "at_message": at, "at_share": strike.at,
                    "seconds": round(time.monotonic() - started, 1), "sent_during": sent_during, "what": what}
            self.fault_lines.append(line)
            self.echo(f"fault {strike.fault} #{strike.number} at message {at:,} ({at / total:.0%}): {what} "
                      f"({line['seconds']} s, {sent_during:,} messages sent meanwhile)")
        self._open_gate(float("inf"))

    def _strike(self, strike: Strike, rng: random.Random) -> str:
        if strike.fault == "schema-mix":
            if strike.message is None:
                return "no SaleRecorded after the moment: nothing written by the v2 writer"
            return (f"SaleRecorded v2 writer (fingerprint {schema_mix.v2_fingerprint().hex()}, + optional "
                    f"{schema_mix.ADDED_FIELD}) from message {strike.message:,} on: {self.plan.v2_count:,} v2 "
                    f"messages ({self.plan.v2_campaigns:,} with a {schema_mix.ADDED_FIELD}), the rest v1")
        if strike.fault == "worker-kill":
            index = rng.randrange(1, self.workers + 1)
            ws = self.worker_settings(index)
            pid = _kill(worker.running(ws), signal.SIGKILL, ws.web_port)
            if strike.number % 3 == 0:            # once more while it recovers
                restarting = threading.Thread(target=_quietly(lambda: worker.start(ws)), daemon=True)
                restarting.start()
                time.sleep(rng.uniform(1.5, 3.0))
                second = _kill(worker.running(ws), signal.SIGKILL, ws.web_port)
                restarting.join(timeout=120)
                worker.stop(ws, timeout=5)
                worker.start(ws)
                return f"killed worker {index} (pid {pid}), and again while it recovered (pid {second}); restarted"
            worker.start(ws)
            return f"killed worker {index} (pid {pid}); restarted"
        if strike.fault == "sink-kill":
            pid = _kill(sink.running(self.settings), signal.SIGKILL, self.settings.sink_port)
            sink.start(self.settings)
            return f"killed the sink (pid {pid}); restarted"
        if strike.fault == "clickhouse-down":
            down = 30.0 if self.plan.full else 10.0
            clickhouse.stop(self.settings)
            time.sleep(down)
            clickhouse.start(self.settings)
            return f"ClickHouse stopped for {down:.0f} s, started again"
        if strike.fault == "rebalance":
            ws = self.worker_settings(2)
            worker.stop(ws)
            time.sleep(rng.uniform(5.0, 10.0))
            worker.start(ws)
            return "worker 2 stopped cleanly and started again"
        if strike.fault == "pause":
            ws = self.worker_settings(2)
            pid = worker.running(ws)
            if pid is None:
                return "worker 2 was not running: nothing paused"
            os.kill(pid, signal.SIGSTOP)
            pause = SESSION_TIMEOUT * 1.5 + rng.uniform(0, 5)
            time.sleep(pause)
            os.kill(pid, signal.SIGCONT)
            return f"worker 2 (pid {pid}) stopped for {pause:.0f} s (past the session timeout), then continued"
        raise ValueError(f"unknown fault {strike.fault}")

    # ---------------------------------------------------------------------------------- settling

    def settle(self, timeout: float) -> tuple[dict[int, list[tuple[int, bytes]]], str]:
        """Wait until ClickHouse and every worker equal the replay of the log and the log stopped
        growing (stage 2 appends its findings); returns the log and how it ended."""
        program = load_program(str(self.settings.program))
        deadline = time.monotonic() + timeout
        last_size, problems = -1, ["not checked yet"]
        log: dict[int, list[tuple[int, bytes]]] = {}
        while time.monotonic() < deadline:
            try:
                log = read_log(self.settings.kafka_bootstrap_servers)
                size = sum(len(v) for v in log.values())
                replayed = oracle.classify(log, program, registry=self.registry).replayer.document()["partners"]
                live, _ = clickhouse_view(self.settings)
                state, state_problems = worker_view(self.worker_urls, self.settings.partitions)
                problems = (list(compare(replayed, live, "ClickHouse", oracle.KEYS)) + state_problems
                            + list(compare(replayed, state, "worker", oracle.KEYS)))
                if not problems and size == last_size:
                    return log, "settled"
                last_size = size
            except Exception as exc:  # noqa: BLE001 - a component still restarting: ask again
                problems = [f"{type(exc).__name__}: {exc}"]
            time.sleep(3.0)
        return log, f"not settled after {timeout:.0f} s: {problems[:3]}; {self.lags()}"

    def lags(self) -> str:
        """Each worker's stage-1 consumer lag by partition (its /metrics): which partition a worker
        has not applied to its end, to tell a stalled tail from a loss when a run does not settle."""
        found = []
        for n, url in enumerate(self.worker_urls, 1):
            try:
                with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
                    text = resp.read().decode()
            except OSError as exc:
                found.append(f"worker {n}: no metrics ({exc})")
                continue
            lags = [line for line in text.splitlines() if line.startswith("incentives_consumer_lag{")]
            found.append(f"worker {n} lag: " + (", ".join(lags) or "none reported"))
        return "; ".join(found)


def _kill(pid: int | None, sig: signal.Signals, port: int | None = None, timeout: float = 30.0) -> int | None:
    """Send `sig`; for SIGKILL, wait until the process is gone (or a zombie) and `port` is free."""
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if sig != signal.SIGKILL:
        return pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (_alive(pid) or (port is not None and _port_taken(port))):
        time.sleep(0.1)
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().split(") ", 1)[-1][:1] != "Z"
    except OSError:
        return False


def _port_taken(port: int) -> bool:
    return port_in_use("127.0.0.1", port)


def _quietly(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):
            fn()
    return run


def dead_letter_records(settings: Settings) -> list[tuple[dict[str, bytes], bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             group_id=None, max_poll_records=10_000)
    try:
        parts = sorted(consumer.partitions_for_topic(topics.DLQ) or [])
        tps = [TopicPartition(topics.DLQ, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[dict[str, bytes], bytes | None]] = []
        idle = 0
        while idle < 3:
            batch = consumer.poll(timeout_ms=500)
            got = sum(len(v) for v in batch.values())
            for msgs in batch.values():
                out += [(oracle.headers_of(m.headers), m.value) for m in msgs]
            at_end = all((consumer.highwater(tp) or 0) <= consumer.position(tp) for tp in tps)
            idle = idle + 1 if got == 0 and at_end else 0
        return out
    finally:
        consumer.close()


def broker_restart(run: Run, timeout: float = 90.0) -> tuple[bool, str]:
    """Restart the broker (an empty log); the worker(s) and the sink must stop by themselves and
    say the log went backwards."""
    broker.stop(run.settings)
    broker.start(run.settings)
    broker.create_topics(run.settings.kafka_bootstrap, run.settings.partitions)
    deadline = time.monotonic() + timeout
    procs: dict[str, tuple[Callable[[], int | None], Path]] = {
        "sink": (lambda: sink.running(run.settings), sink.log_file(run.settings))}
    for i in range(1, run.workers + 1):
        ws = run.worker_settings(i)
        procs[f"worker {i}"] = (functools.partial(worker.running, ws), worker.log_file(ws))
    while time.monotonic() < deadline and any(running() for running, _ in procs.values()):
        time.sleep(1.0)
    findings = []
    ok = True
    for name, (running, log_path) in procs.items():
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        said = next((line.strip() for line in text.splitlines() if any(p in line for p in BACKWARDS)), "")
        stopped = running() is None
        ok = ok and bool(said) and stopped
        findings.append(f"{name}: {'stopped' if stopped else 'STILL RUNNING'}, "
                        + (f"saying: {said[-160:]}" if said else "DID NOT say the log went backwards"))
    return ok, "; ".join(findings)


def run_chaos(plan: Plan, *, rate: float = 500.0, home: Path | None = None, keep: bool = False,
              settle_timeout: float = 300.0, echo: Echo = print) -> dict[str, Any]:
    """Run `plan` on a stack of its own; returns the report (see `incentives chaos --help`)."""
    faults = {s.fault for s in plan.strikes}
    home = home or Path(tempfile.mkdtemp(prefix=f"incentives-chaos-{plan.seed}-"))
    settings = chaos_settings(home, plan.seed)
    home.mkdir(parents=True, exist_ok=True)
    # what `incentives dev status|down` with these variables (or a test) needs to find this stack
    (home / SETTINGS_FILE).write_text(json.dumps(settings.as_env(), indent=1, sort_keys=True) + "\n")
    workers = 2 if faults & {"rebalance", "pause"} else 1
    registry = stack_registry(settings)
    run = Run(plan, settings, workers, rate, echo, registry=registry)
    echo(f"chaos seed {plan.seed}: {len(plan.messages):,} messages ({plan.resent_count:,} re-sent upstream, "
         f"{plan.poison_count:,} poison, {plan.v2_count:,} SaleRecorded v2), {len(plan.strikes)} fault strikes; "
         f"stack in {home}")
    stack.up(settings, workers=workers, echo=lambda line: echo(f"  {line}"))
    watch = Watch(settings, interval=5.0, chains=len(plan.messages) <= 20_000).start()
    # ClickHouse is down on purpose now and then: the driver's own reconnect tracebacks are noise here
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    rng = random.Random(plan.seed * 7919 + 1)
    report: dict[str, Any] = {"seed": plan.seed, "messages": len(plan.messages), "poison": plan.poison_count,
                              "resent": plan.resent_count, "v2_sales": plan.v2_count, "faults": run.fault_lines,
                              "home": str(home)}
    try:
        sender = threading.Thread(target=run.send_all, name="chaos-producer", daemon=True)
        sender.start()
        run.strike_all(rng)
        sender.join()
        log, settled = run.settle(settle_timeout)
        echo(f"after the faults: {settled}")
        watch.stop()
        program = load_program(str(settings.program))
        mixed = {"SaleRecorded v2": (schema_mix.v2_fingerprint(), plan.v2_count)} if "schema-mix" in faults else None
        verdict = oracle.judge(oracle.classify(log, program, registry=registry), settings, run.worker_urls,
                               settings.partitions, dead_letter_records(settings), plan.poison_count,
                               mixed_writers=mixed)
        verdict.add("the invariants held throughout (watched every 5 s)", watch.violations,
                    f"{watch.checks} checks, {watch.transient} transient findings healed, "
                    f"{watch.unreachable} while ClickHouse was unreachable")
        verdict.add("every fault was injected", run.errors, f"{len(run.fault_lines)} strikes")
        if any(s.fault == "broker-restart" for s in plan.strikes):
            ok, what = broker_restart(run)
            run.fault_lines.append({"fault": "broker-restart", "number": 1, "what": what})
            echo(f"fault broker-restart #1 at the end: {what}")
            verdict.add("an emptied log stops the worker(s) and the sink loudly", [] if ok else [what], what)
        report.update(settled=settled, **verdict.document())
        return report
    finally:
        watch.stop()
        if not keep:
            stack.down(settings, wipe=True, echo=lambda _line: None)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
