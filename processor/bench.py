"""Benchmarks: the pure domain fold, and the live pipeline on a running local stack.

Figures are measured and reported, never asserted: these machines vary, and a benchmark that fails
tells less than one that prints its numbers.

``run_core`` (no services): simulate N events, encode them with the Avro codec, then time
(a) Avro decode of every message, (b) the file replay fold (`Replayer`, both stages) over the
decoded events, (c) `folding.fold_partition` over the bytes in batches per partition with a dict
as the state store, the stage-2 forwards bundled (what the stage-1 agent does, minus Kafka and
RocksDB: history entries are read from the store on demand), and (d) the same plus building each batch's state records
(`partition_state.py`), as the agent writes them.

``run_pipeline`` (the stack of the current settings, `incentives dev up`): wait until the worker
is idle, produce N simulated events with a kafka-python producer (all encoded first, then sent),
poll the worker's ``/metrics`` until stage 1 has counted every message, then poll ClickHouse
``ledger FINAL`` and the worker's consumer-group lag until the ledger stops growing and every
input is committed (stage 2 and the sink lag far behind stage 1). Every id in the run (partners,
events, orders, customers, deals, ...) carries a fresh run id, and the simulated clock starts after
the latest event already in the log (`processor.simulation`: `new_run_id`, `log_position`,
`start_after`, shared with `incentives simulate`), so runs never collide with each other's
partners, orders or closed periods.
"""
from __future__ import annotations

import gc
import itertools
import json
import os
import re
import resource
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from processor import topics
from processor.codec import decode, encode
from processor.config import Settings
from processor.domain.timeutil import iso_seconds
from processor.simulation import log_position, new_run_id, simulate, start_after

Echo = Callable[[str], None]

DEFAULT_CORE_EVENTS = 200_000
DEFAULT_PIPELINE_EVENTS = 100_000
DEFAULT_PARTNERS = 500
DEFAULT_BATCH = 10_000
DEFAULT_START = "2026-01-01T00:00:00Z"
#: Stage 1 must reach the target within BASE + N / MIN_RATE seconds (proportional timeout).
PIPELINE_TIMEOUT_BASE = 60.0
PIPELINE_TIMEOUT_MIN_RATE = 200.0
#: Done when the worker's group has committed everything and nothing changed for this long
#: (without the lag, only the counters tell, and the worker can pause longer than that).
SINK_STABLE_SECONDS = 6.0
NO_LAG_STABLE_SECONDS = 20.0
SINK_TIMEOUT = 300.0
#: Before a run the worker must have been idle this long (no counter moved).
IDLE_BEFORE_SECONDS = 3.0

EVENTS_METRIC = "incentives_events_total"
BATCH_METRIC = "incentives_batch_seconds"
SINK_ROWS_METRIC = "incentives_sink_rows_total"


def _quiet(_line: str) -> None:
    pass


# ------------------------------------------------------------------------------------- figures

class Timer:
    """Wall time, this process's CPU time and the time spent in the cyclic garbage collector of
    the blocks run under it (re-entrant: the totals add up over several ``with timer:``).
    CPU well below wall means the machine was busy with something else."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.gc = 0.0
        self._gc_started: float | None = None

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc += time.perf_counter() - self._gc_started
            self._gc_started = None

    def __enter__(self) -> Timer:
        gc.callbacks.append(self._on_gc)
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall0
        self.cpu += time.process_time() - self._cpu0
        gc.callbacks.remove(self._on_gc)

@dataclass
class Figure:
    """One measured step: `events` input events in `seconds`, and a note for the table."""
    name: str
    events: int
    seconds: float
    note: str = ""
    cpu_seconds: float | None = None     # this process's CPU time in the step (core only)
    gc_seconds: float | None = None      # of which in Python's cyclic garbage collector

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"events": self.events, "seconds": round(self.seconds, 3),
                               "events_per_s": round(self.rate) if self.seconds > 0 else None}
        if self.cpu_seconds is not None:
            out["cpu_seconds"] = round(self.cpu_seconds, 3)
        if self.gc_seconds is not None:
            out["gc_seconds"] = round(self.gc_seconds, 3)
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Report:
    """The result of one part (core or pipeline): timed figures and other facts."""
    part: str
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, events: int, seconds: float, note: str = "", *,
            cpu_seconds: float | None = None, gc_seconds: float | None = None) -> Figure:
        fig = Figure(name, events, seconds, note, cpu_seconds, gc_seconds)
        self.figures.append(fig)
        return fig

    def timed(self, name: str, events: int, timer: Timer, note: str = "") -> Figure:
        return self.add(name, events, timer.wall, note, cpu_seconds=timer.cpu, gc_seconds=timer.gc)

    def as_dict(self) -> dict[str, Any]:
        return {**self.facts, "figures": {f.name: f.as_dict() for f in self.figures}}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_share(report: Report) -> str:
    """CPU over wall time of the timed steps: well under 100% means other processes took the cores."""
    figs = [f for f in report.figures if f.cpu_seconds is not None]
    wall = sum(f.seconds for f in figs)
    return f"{100 * sum(f.cpu_seconds or 0 for f in figs) / wall:.0f}%" if wall > 0 else "-"


def _load() -> str:
    """The 1/5/15-minute load averages and the core count (figures on a busy machine are lower)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "-"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def format_table(report: Report) -> str:
    """The figures of a report as an aligned table, then its facts."""
    timed = any(f.cpu_seconds is not None for f in report.figures)
    rows = [("step", "events", "seconds", "events/s", "cpu/gc s" if timed else "", "")]
    for f in report.figures:
        rate = f"{f.rate:,.0f}" if f.seconds > 0 else "-"
        cpu = "" if f.cpu_seconds is None else f"{f.cpu_seconds:.2f}/{f.gc_seconds or 0:.2f}"
        rows.append((f.name, f"{f.events:,}", f"{f.seconds:.2f}", rate, cpu, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"== {report.part} =="]
    for i, r in enumerate(rows):
        line = (f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  "
                + (f"{r[4]:>{widths[4]}}  " if timed else "") + r[5])
        lines.append(line.rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths[: 5 if timed else 4]))
    if report.facts:
        width = max(len(k) for k in report.facts)
        for key, value in report.facts.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- events

_ID_FIELD = re.compile(r"_id$")


def tag_ids(event: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of `event` with `prefix` in front of every id (`*_id` string fields except the
    all-partners `*`), so two runs share no partner, event, order, customer or deal."""
    out = dict(event)
    for key, value in event.items():
        if _ID_FIELD.search(key) and isinstance(value, str) and value != "*":
            out[key] = prefix + value
    return out


def generate(n: int, seed: int, partners: int, start: str | int = DEFAULT_START,
             prefix: str = "SIM") -> list[dict[str, Any]]:
    """The first `n` simulated events (JSON-ready dicts), every id starting with `prefix`."""
    return list(itertools.islice(simulate(seed, partners, start=start, prefix=prefix), n))


def wire_messages(encoded: Iterable[tuple[dict[str, Any], bytes]],
                  partitions: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, partition) per message as the producer writes them: keyed by partner, a
    PeriodClosed once into every partition."""
    out: list[tuple[bytes, bytes, int]] = []
    for event, value in encoded:
        if event["event_type"] == "PeriodClosed":
            out += [(b"*", value, p) for p in range(partitions)]
        else:
            key = event["partner_id"].encode()
            out.append((key, value, topics.partition_of(key, partitions)))
    return out


# ------------------------------------------------------------------------------------- core

def run_core(n: int = DEFAULT_CORE_EVENTS, *, seed: int = 7, partners: int = DEFAULT_PARTNERS,
             partitions: int = 4, batch: int = DEFAULT_BATCH, program_path: str | None = None,
             echo: Echo = _quiet) -> Report:
    """Time the domain core without services (see the module docstring)."""
    from processor.domain.engine import Stage1
    from processor.programs import load_program
    from processor.replay import Replayer
    from processor.stream.folding import Message, PartitionState, fold_partition
    from processor.stream.forwarding import bundles

    program = load_program(program_path)
    report = Report("core")

    echo(f"core: simulating {n:,} events ({partners} partners, seed {seed}) ...")
    with Timer() as t:
        events = generate(n, seed, partners)
    n = len(events)
    report.timed("simulate (setup)", n, t, "processor.simulation, not the core")

    with Timer() as t:
        encoded = [encode(e) for e in events]
    report.timed("validate + Avro encode", n, t)
    closes = sum(1 for e in events if e["event_type"] == "PeriodClosed")
    del events

    echo("core: (a) Avro decode ...")
    with Timer() as t:
        decoded = [decode(b) for b in encoded]
    report.timed("(a) Avro decode", n, t)

    echo("core: (b) file replay fold ...")
    replayer = Replayer(program)
    with Timer() as t:
        for event in decoded:
            replayer.feed(event)
    report.timed("(b) replay fold (Replayer)", n, t, f"both stages, {len(replayer.ledger):,} ledger entries")
    del replayer

    messages = wire_messages(zip(decoded, encoded, strict=True), partitions)
    del decoded
    per_partition: dict[int, list[Message]] = defaultdict(list)
    for _key, value, p in messages:
        per_partition[p].append(Message(topics.PARTNER_EVENTS, p, len(per_partition[p]), value, None))
    del messages
    msg_count = sum(len(v) for v in per_partition.values())

    facts: dict[str, Any] = {}

    def fold_all(pickled: bool) -> tuple[Timer, int, int, int]:
        """Every partition in batches, like the agent: fold, then (`pickled`) build the batch's
        state records (partition_state.py) and keep them in a dict standing for the store."""
        stage1 = Stage1(program)              # live: deal ids per partner
        timer = Timer()
        records = batches = writes = 0
        by_topic: dict[str, int] = defaultdict(int)
        state_bytes: list[int] = []
        for p in sorted(per_partition):
            store: dict[bytes, bytes] = {}
            part = PartitionState(p, store)
            msgs = per_partition[p]
            for i in range(0, len(msgs), batch):
                chunk = msgs[i:i + batch]
                with timer:
                    result = fold_partition(stage1, part, chunk)
                    result.records += bundles(result.forwards, partitions, p)
                    if pickled:
                        batch_records = part.batch_records(result.dirty)
                if not pickled:                   # (c) times the fold alone, but the store is real
                    batch_records = part.batch_records(result.dirty)
                store.update(batch_records)
                state_bytes += [len(k) + len(v) for k, v in batch_records]
                part.committed(result.dirty)
                records += len(result.records)
                writes += len(result.dirty)
                batches += 1
                for r in result.records:
                    by_topic[r.topic] += 1
        facts.update(outputs_per_event={t: round(c / max(1, n), 3) for t, c in sorted(by_topic.items())})
        if state_bytes:
            facts.update(state_record_bytes=f"{len(state_bytes):,} records, mean "
                                            f"{sum(state_bytes) // len(state_bytes):,}, max {max(state_bytes):,}")
        return timer, records, batches, writes

    echo(f"core: (c) fold_partition, {partitions} partitions, batches of {batch:,} ...")
    t, records, batches, writes = fold_all(pickled=False)
    report.timed("(c) fold_partition, dict store", n, t,
                 f"{msg_count:,} msgs, {batches} batches, {records:,} output records")
    echo("core: (d) the same, building every batch's state records ...")
    t, _, _, writes = fold_all(pickled=True)
    report.timed("(d) (c) + state records", n, t, f"{writes:,} partner writes (partition_state.py)")

    report.facts.update({
        "events": n,
        "messages": msg_count,
        "period_closes": closes,
        "partners": partners,
        "partitions": partitions,
        "avg_message_bytes": round(sum(len(b) for b in encoded) / max(1, n), 1),
        "output_records_per_event": round(records / max(1, n), 2),
        **facts,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpu_of_wall": _cpu_share(report),
        "load_average": _load(),
    })
    return report


# ------------------------------------------------------------------------------------- live stack

class StackNotReady(RuntimeError):
    """The worker (or the broker) of the current settings does not answer."""


def _http_get(url: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError, ValueError):
        return None, b""


def worker_ready(settings: Settings) -> int | None:
    """HTTP status of the worker's /ready, None if nothing answers."""
    return _http_get(f"{settings.web_url}/ready", timeout=2.0)[0]


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


@dataclass
class WorkerMetrics:
    stage1: float            # messages stage 1 took from the producer's side (see stage1_count)
    all_events: float        # sum of incentives_events_total over every label
    batches: float
    batch_seconds: float
    sink_rows: float         # rows the sink wrote to ClickHouse (copies included)

    @property
    def activity(self) -> tuple[float, float, float]:
        """Changes whenever stage 1 (incl. stage-2 findings) or the sink did anything."""
        return (self.all_events, self.batches, self.sink_rows)


def stage1_count(samples: list[tuple[str, dict[str, str], float]]) -> float:
    """Stage 1's count of the messages producers wrote: `incentives_events_total` over all labels,
    without the AnomalyDetected events stage 2 appends itself and without redeliveries (a message
    skipped after a restart, already counted when it was applied)."""
    return sum(v for name, labels, v in samples if name == EVENTS_METRIC
               and labels.get("event_type") != "AnomalyDetected" and labels.get("outcome") != "redelivered")


def read_worker_metrics(settings: Settings) -> WorkerMetrics:
    """The counters of every running worker of the stack (`dev up --workers N`), summed."""
    from processor.devstack import worker
    samples = []
    for _name, instance in worker.instances(settings):
        status, body = _http_get(f"{instance.web_url}/metrics")
        if status != 200:
            raise StackNotReady(f"the worker's {instance.web_url}/metrics answered {status}")
        samples += parse_metrics(body.decode("utf-8", "replace"))
    return WorkerMetrics(
        stage1=stage1_count(samples),
        all_events=sum(v for name, _, v in samples if name == EVENTS_METRIC),
        batches=sum(v for name, _, v in samples if name == BATCH_METRIC + "_count"),
        batch_seconds=sum(v for name, _, v in samples if name == BATCH_METRIC + "_sum"),
        sink_rows=sum(v for name, _, v in samples if name == SINK_ROWS_METRIC),
    )


class KafkaLag:
    """Records on the worker's input topics that its consumer groups have not committed yet: the
    stages' group (`app_id`: partner-events, repartition) and the sink's (`app_id-sink`: partner-events
    and every output topic).

    The high watermark comes from a fetch of each partition's last batch: this broker's
    ``end_offsets()`` returns the base offset of the last batch + 1 (see STACK.md), which would
    hide a multi-record tail. Nothing is committed: the groups are only read (no join)."""

    GROUPS = (("", (topics.PARTNER_EVENTS, topics.REPARTITION)),
              ("-sink", (topics.PARTNER_EVENTS, *topics.OUTPUT_TOPICS)))

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer, TopicPartition
        self.members = []
        for suffix, names in self.GROUPS:
            consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                     group_id=settings.app_id + suffix, enable_auto_commit=False,
                                     max_partition_fetch_bytes=64 * 1024)
            tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or [])]
            consumer.assign(tps)
            self.members.append((consumer, tps))

    def __call__(self) -> int:
        return sum(self._lag(consumer, tps) for consumer, tps in self.members)

    @staticmethod
    def _lag(consumer, tps) -> int:  # type: ignore[no-untyped-def]
        committed = {tp: consumer.committed(tp) or 0 for tp in tps}
        ends = consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, ends[tp] - 1))
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200, max_records=100_000).items():
                if records:
                    pending.discard(tp)
        return sum(max(0, max(ends[tp], consumer.highwater(tp) or 0) - committed[tp]) for tp in tps)

    def close(self) -> None:
        for consumer, _ in self.members:
            consumer.close(autocommit=False)


def wait_until_idle(settings: Settings, lag: Callable[[], int] | None, stable: float, timeout: float,
                    probe: Callable[[], Any] | None = None, poll: float = 1.0, echo: Echo = _quiet,
                    what: str = "the worker") -> tuple[float | None, float | None, bool]:
    """Poll until the worker's consumer group has committed everything (`lag()` is 0) and neither
    its counters nor `probe()` changed for `stable` seconds. Returns (seconds until the worker was
    last seen busy, seconds until `probe()` last changed, idle reached); a time is None when
    nothing was seen. Without `lag`, only the counters and the probe are watched."""
    start = time.perf_counter()
    busy_at: float | None = None
    probe_at: float | None = None
    last_activity = read_worker_metrics(settings).activity
    last_probe = probe() if probe else None
    quiet_since = last_echo = start
    behind = 0
    while True:
        now = time.perf_counter()
        try:
            behind = lag() if lag else 0
        except Exception as e:  # noqa: BLE001 - a Kafka hiccup: judge by the counters alone
            echo(f"pipeline:   consumer lag unavailable ({e!r:.100})")
            behind = 0
        try:
            activity = read_worker_metrics(settings).activity
        except StackNotReady:
            activity = last_activity
        value = probe() if probe else None
        now = time.perf_counter()
        if activity != last_activity or behind > 0:
            last_activity, busy_at, quiet_since = activity, now - start, now
        if value != last_probe:
            last_probe, probe_at, quiet_since = value, now - start, now
        if now - quiet_since >= stable:
            return busy_at, probe_at, True
        if now - start >= timeout:
            return busy_at, probe_at, False
        if now - last_echo >= 10:
            echo(f"pipeline:   {what} still busy after {now - start:.0f} s ({behind:,} records not committed)")
            last_echo = now
        time.sleep(poll)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _rss_mb(pid: int) -> tuple[float, float] | None:
    """(current, peak) resident set size of a process in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the components `incentives dev up` started with these settings (by pid file): every
    worker (`worker`, `worker-2`, ...), the sink process, the broker and ClickHouse."""
    from processor.devstack import broker, clickhouse, sink, worker
    pids = {}
    for name, instance in worker.instances(settings):
        pid = worker.running(instance)
        if pid is not None:
            pids[name] = pid
    for component in (sink, broker, clickhouse):
        pid = component.running(settings)
        if pid is not None:
            pids[component.NAME] = pid
    return pids


class _ClickHouse:
    def __init__(self, settings: Settings) -> None:
        from projections.migrate import client
        self.db = settings.clickhouse_database
        self.client = client(settings)

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.client.execute(sql.format(db=self.db), params or {})
        return rows[0][0] if rows else None

    def ledger_count(self, like: str) -> int:
        return int(self.scalar("SELECT count() FROM {db}.ledger FINAL WHERE partner_id LIKE %(p)s",
                               {"p": like}))


def pipeline_timeout(n: int) -> float:
    return PIPELINE_TIMEOUT_BASE + n / PIPELINE_TIMEOUT_MIN_RATE


def run_pipeline(settings: Settings, n: int = DEFAULT_PIPELINE_EVENTS, *, seed: int = 7,
                 partners: int = DEFAULT_PARTNERS, timeout: float | None = None,
                 run_id: str | None = None, echo: Echo = _quiet) -> Report:
    """Time the live pipeline of `settings` (see the module docstring). Raises StackNotReady when
    the worker's /ready does not answer 200."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    status = worker_ready(settings)
    if status != 200:
        what = "nothing answers" if status is None else f"it answered HTTP {status}"
        raise StackNotReady(
            f"no ready worker at {settings.web_url}/ready ({what}). Start the local stack first with "
            f"`incentives dev up` (same INCENTIVES_* settings: kafka {settings.kafka_bootstrap}, "
            f"worker web port {settings.web_port}, home {settings.home}).")

    run_id = run_id or new_run_id()
    prefix = f"bench-{run_id}"
    timeout = pipeline_timeout(n) if timeout is None else timeout
    report = Report("pipeline")
    load_before = _load()

    ch: _ClickHouse | None
    try:
        ch = _ClickHouse(settings)
    except Exception as e:  # noqa: BLE001 - any driver error: measure without the sink
        echo(f"pipeline: ClickHouse does not answer ({e!r:.200}); the sink figure is skipped")
        ch = None
    try:
        start = iso_seconds(start_after(log_position(settings)))
    except KafkaError as e:
        raise StackNotReady(f"cannot read the log at {settings.kafka_bootstrap}: {e!r:.200}") from None

    echo(f"pipeline: run {run_id}: simulating {n:,} events from {start[:10]} ({partners} partners) ...")
    t = time.perf_counter()
    events = generate(n, seed, partners, start=start, prefix=prefix)
    report.add("simulate (setup)", len(events), time.perf_counter() - t, "not timed in the pipeline")
    n = len(events)
    t = time.perf_counter()
    encoded = [encode(e) for e in events]
    report.add("validate + Avro encode", n, time.perf_counter() - t, "before sending")

    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks=1, linger_ms=20,
                                 batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024, retries=5)
    except KafkaError:
        raise StackNotReady(f"no Kafka broker answers at {settings.kafka_bootstrap} "
                            "(start the stack with `incentives dev up`)") from None
    try:
        parts = producer.partitions_for(topics.PARTNER_EVENTS)
        if not parts:
            raise StackNotReady(f"topic {topics.PARTNER_EVENTS} has no partitions on {settings.kafka_bootstrap}")
        messages = wire_messages(zip(events, encoded, strict=True), len(parts))
        del events, encoded

        try:
            lag: KafkaLag | None = KafkaLag(settings)
        except KafkaError as e:
            echo(f"pipeline: cannot read the worker's consumer lag ({e!r:.100}); judging idleness by its counters")
            lag = None
        stable = SINK_STABLE_SECONDS if lag is not None else NO_LAG_STABLE_SECONDS
        # a backlog of an earlier run would be measured as this one's: wait for the worker to idle
        echo("pipeline: checking that the worker is idle ...")
        busy_for, _, idle = wait_until_idle(settings, lag, IDLE_BEFORE_SECONDS if lag else stable,
                                            max(60.0, timeout), echo=echo,
                                            what="the worker (a backlog from before this run)")
        report.facts["worker_busy_before_run_s"] = round(busy_for, 1) if busy_for is not None else 0
        if not idle:
            echo("pipeline: WARNING: the worker is still busy with earlier messages; figures are low")
            report.facts["warning"] = "the worker was still busy with earlier messages when the run began"
        before = read_worker_metrics(settings)
        pids = stack_pids(settings)
        workers = max(1, sum(1 for name in pids if name.startswith("worker")))
        cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        ledger_before = ch.ledger_count(prefix + "-%") if ch else 0

        echo(f"pipeline: sending {len(messages):,} messages to {settings.kafka_bootstrap} ...")
        t0 = time.perf_counter()
        for key, value, p in messages:
            producer.send(topics.PARTNER_EVENTS, key=key, value=value, partition=p)
        producer.flush(timeout=max(60.0, timeout))
        produced = time.perf_counter() - t0
    finally:
        producer.close(timeout=10)
    target = len(messages)
    report.add("producer (kafka-python, acks=1)", n, produced, f"{target:,} msgs, "
               f"{target / produced:,.0f} msgs/s" if produced > 0 else "")

    echo(f"pipeline: waiting for stage 1 to count {target:,} messages (timeout {timeout:.0f} s) ...")
    deadline = t0 + timeout
    first_progress: float | None = None
    done_at: float | None = None
    last_echo = time.perf_counter()
    now_metrics = before
    while True:
        try:
            now_metrics = read_worker_metrics(settings)
        except StackNotReady as e:
            echo(f"pipeline: {e}")
        counted = now_metrics.stage1 - before.stage1
        now = time.perf_counter()
        if counted > 0 and first_progress is None:
            first_progress = now - t0
        if counted >= target:
            done_at = now - t0
            break
        if now > deadline:
            break
        if now - last_echo >= 5:
            echo(f"pipeline:   {counted:,.0f} / {target:,} after {now - t0:.0f} s")
            last_echo = now
        time.sleep(0.2)
    counted = int(now_metrics.stage1 - before.stage1)
    cpu_after = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    wall = (done_at if done_at is not None else time.perf_counter() - t0)
    if done_at is not None:
        report.add("end to end: sent -> stage 1 counted", n, done_at, f"{target:,} msgs")
    else:
        report.add("end to end (TIMED OUT)", counted, wall,
                   f"only {counted:,} of {target:,} msgs counted in {timeout:.0f} s")
    if first_progress is not None and done_at is not None and done_at > first_progress:
        report.add("stage 1 after its first count", n, done_at - first_progress, "without start-up latency")

    batches = now_metrics.batches - before.batches
    batch_seconds = now_metrics.batch_seconds - before.batch_seconds
    report.facts.update({
        "run_id": run_id,
        "partner_prefix": prefix,
        "simulated_from": start,
        "events": n,
        "messages": target,
        "stage1_counted": counted,
        "stage2_findings_by_stage1_end": int((now_metrics.all_events - before.all_events)
                                       - (now_metrics.stage1 - before.stage1)),
        "first_count_after_s": round(first_progress, 2) if first_progress is not None else None,
        "stage1_batches": int(batches),
        "stage1_mean_batch_msgs": round(counted / batches) if batches else None,
        "stage1_mean_batch_s": round(batch_seconds / batches, 3) if batches else None,
        "stage1_busy_share": round(batch_seconds / wall / workers, 2) if wall > 0 else None,
        "workers": workers,
        "stage1_events_per_s_per_worker": round(n / done_at / workers) if done_at else None,
    })

    def cpu_facts(label: str, cpu_after: dict[str, float | None], seconds: float) -> None:
        for name in pids:
            b, a = cpu_before.get(name), cpu_after.get(name)
            if b is not None and a is not None and seconds > 0:
                report.facts[f"cpu_{name}_{label}"] = f"{a - b:.1f} s = {100 * (a - b) / seconds:.0f}% of one core"

    cpu_facts("to_stage1_end", cpu_after, wall)

    # The sink (and stage 2, whose findings stage 1 applies) may be far behind stage 1: wait until
    # the run's ledger rows AND every worker counter have stopped moving.
    echo("pipeline: waiting until ClickHouse ledger FINAL stops growing and the worker has committed all ...")
    probe = (lambda: ch.ledger_count(prefix + "-%")) if ch is not None else None
    since = time.perf_counter() - t0
    try:
        worker_at, ledger_at, idle = wait_until_idle(settings, lag, stable,
                                                     max(SINK_TIMEOUT, timeout), probe=probe, echo=echo,
                                                     what="stage 2 / the sink")
    finally:
        if lag is not None:
            lag.close()
    final = read_worker_metrics(settings)
    if ch is not None:
        added = ch.ledger_count(prefix + "-%") - ledger_before
        grew_at = since + ledger_at if ledger_at is not None else since
        report.add("sink: sent -> ledger FINAL stable" + ("" if idle else " (TIMED OUT)"), n, grew_at,
                   f"{added:,} ledger rows; last growth seen (poll 1 s)")
        report.facts["ledger_rows"] = added
    else:
        report.facts["ledger_rows"] = None
    idle_at = since + worker_at if worker_at is not None else since
    report.add("worker idle: stage 2 + sink done" + ("" if idle else " (TIMED OUT)"), n, idle_at,
               "consumer lag 0, counters still")
    cpu_facts("to_idle", {name: _cpu_seconds(pid) for name, pid in pids.items()}, idle_at)
    worker_pid = pids.get("worker")
    rss = _rss_mb(worker_pid) if worker_pid else None
    if rss:
        report.facts["worker_rss_mb"] = f"{rss[0]:.0f} (peak {rss[1]:.0f})"
    report.facts["stage2_findings_total"] = int((final.all_events - before.all_events)
                                                - (final.stage1 - before.stage1))
    report.facts["sink_rows_total"] = int(final.sink_rows - before.sink_rows)
    report.facts["bench_peak_rss_mb"] = round(peak_rss_mb(), 1)
    report.facts["load_average"] = f"{load_before} before, {_load()} after"
    return report


def summary(reports: list[Report], skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON document of a bench run."""
    doc: dict[str, Any] = {"bench": "incentives", "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    for r in reports:
        doc[r.part] = r.as_dict()
    for part, reason in (skipped or {}).items():
        doc[part] = {"skipped": reason}
    return doc


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)
