"""`incentives bench --what ceiling`: what one Python process can do with stage 1's own work when
nothing but a plain Kafka client stands around it, and what it can do with light work.

Why: the live pipeline (`--what pipeline`) runs stage 1 inside Faust. Its figure alone does not say
how much is lost to the framework and how much is the work itself. Two loops over the same topic,
with the same client, tell them apart (issue 14 item 1):

(a) the same-work ceiling. A scratch topic is pre-filled with N simulated events (`simulate`,
    Avro-encoded by `processor.codec.encode`, keyed by partner, a `PeriodClosed` into every
    partition: `bench.wire_messages`, as the producer writes them). A plain aiokafka consumer (no
    Faust, no consumer group: every partition assigned, read from its first offset with
    `getmany(max_records=10,000)`) hands each batch's raw bytes per partition to
    `folding.fold_partition` with a stage-1 core (`Stage1(program)`, as the worker builds it) over
    a `PartitionState` per partition backed by a dict; every output record (`result.records`:
    ledger entries, tier changes, decisions, alerts, dead letters; and the batch's stage-2 forwards
    in one bundle per repartition partition, `forwarding.bundles`, as the agent does) is sent with
    an aiokafka producer (acks=all and 512 KB record batches, like the worker's) to a scratch copy
    of its topic, in whole record batches per topic-partition as the worker sends them
    (`delivery._send_batched`), the whole batch sent and then awaited together; then each
    partition's batch records are written into its dict and `committed()`: the order of the
    stage-1 agent (`processor/stream/stage1.py`), minus Faust, RocksDB and the changelog. No offsets are committed.
(b) a light-work reference on the same topic, consumer and producer: decode with the codec, fold
    into a small dict per partner (events and the sum of `amount_cents`), and encode and send 1.5
    small JSON records per event (a running total for every event, a note for every second one),
    sent the same way.
    This is the kind of loop the figures of STACK.md ("Faust throughput") were measured with.

Both loops run with the worker's garbage-collector thresholds (`WORKER_GC_THRESHOLD`, set process
wide by `processor/stream/app.py`), restored afterwards: at Python's defaults the young collections
triggered by the producer's sends rescan the growing live state, a quarter of (a)'s
time, which the worker does not pay either. The CPU/GC column shows what is left.

The ratio (a)/(b) says how far the project's work itself sits below a light loop on the same
client; the pipeline over (a) (`--what all` with a worker running) how much Faust and the rest of
the worker cost on top of the work. The scratch topics (`bench-<hex>-...`) are deleted afterwards;
the replays (`bench_replay.py`) read the input topic before that. Figures only, nothing asserted.
"""
from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from processor import topics
from processor.bench import Report, Timer, _load, generate, peak_rss_mb, wire_messages
from processor.codec import InvalidEvent, decode, encode
from processor.config import Settings

Echo = Callable[[str], None]

DEFAULT_CEILING_EVENTS = 100_000
#: records per `getmany`, like the worker's batches of up to 10,000 events
MAX_RECORDS = 10_000
#: give up when nothing arrives for this long (a broker that stopped answering)
IDLE_TIMEOUT = 60.0
#: the producer's outstanding sends awaited together while pre-filling the topic
FILL_CHUNK = 20_000
#: what `processor/stream/app.py` sets for the worker process (`gc.set_threshold`)
WORKER_GC_THRESHOLD = (100_000, 50, 100)


def _quiet(_line: str) -> None:
    pass


def broker_answers(settings: Settings, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the first bootstrap server."""
    import socket
    host, _, port = settings.kafka_bootstrap_servers[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@dataclass
class ScratchLog:
    """A scratch input topic pre-filled with simulated events, and its scratch output topics."""
    bootstrap: list[str]
    prefix: str                              # "bench-<hex>-"
    partitions: int
    events: int                              # simulated events (a PeriodClosed counts once)
    messages: int                            # records on the input topic (PeriodClosed in every partition)
    fill_seconds: float = 0.0
    avg_message_bytes: float = 0.0
    created: list[str] = field(default_factory=list)

    @property
    def input_topic(self) -> str:
        return self.prefix + topics.PARTNER_EVENTS

    def out_topic(self, topic: str) -> str:
        """The scratch copy of an output topic of stage 1."""
        return self.prefix + topic

    @property
    def light_topic(self) -> str:
        return self.prefix + "light"

    @property
    def output_topics(self) -> list[str]:
        """Every topic (a) may write to, scratch names."""
        return [self.out_topic(t) for t in (*topics.OUTPUT_TOPICS, topics.REPARTITION)]


def _producer(bootstrap: list[str], max_request_size: int):  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaProducer
    # record batches as large as the worker's (processor/stream/app.py, producer_max_batch_size)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=max_request_size,
                            max_batch_size=min(512 * 1024, max_request_size))


def _consumer(bootstrap: list[str]):  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaConsumer
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024 * 1024,
                            fetch_max_bytes=64 * 1024 * 1024)


def prepare(settings: Settings, n: int = DEFAULT_CEILING_EVENTS, *, seed: int = 7, partners: int = 500,
            echo: Echo = _quiet) -> ScratchLog:
    """Create the scratch topics (`settings.partitions` partitions each) and fill the input topic
    with the first `n` events of `simulate(seed, partners)`, Avro-encoded, as the producer writes
    them. The fill is timed but is no figure of the loops."""
    from processor.devstack.broker import create_topics

    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    events = generate(n, seed, partners)
    encoded = [encode(e) for e in events]
    messages = wire_messages(zip(events, encoded, strict=True), settings.partitions)
    del events
    log = ScratchLog(settings.kafka_bootstrap_servers, prefix, settings.partitions, n, len(messages),
                     avg_message_bytes=round(sum(len(b) for b in encoded) / max(1, n), 1))
    names = (log.input_topic, *log.output_topics, log.light_topic)
    echo(f"ceiling: creating scratch topics {prefix}* ({settings.partitions} partitions) ...")
    log.created = create_topics(log.bootstrap, settings.partitions, names)
    echo(f"ceiling: filling {log.input_topic} with {n:,} events ({len(messages):,} messages) ...")

    async def fill() -> None:
        producer = _producer(log.bootstrap, settings.max_message_bytes)
        await producer.start()
        try:
            for i in range(0, len(messages), FILL_CHUNK):
                futures = [await producer.send(log.input_topic, value, key, partition)
                           for key, value, partition in messages[i:i + FILL_CHUNK]]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    t0 = time.perf_counter()
    try:
        asyncio.run(fill())
    except BaseException:
        drop(log, echo)
        raise
    log.fill_seconds = time.perf_counter() - t0
    return log


def drop(log: ScratchLog, echo: Echo = _quiet) -> None:
    """Delete the scratch topics (best effort: a broker that cannot delete keeps them)."""
    from kafka.admin import KafkaAdminClient

    names = [log.input_topic, *log.output_topics, log.light_topic]
    try:
        admin = KafkaAdminClient(bootstrap_servers=log.bootstrap, client_id="incentives-bench",
                                 request_timeout_ms=30000)
        try:
            admin.delete_topics(names)
        finally:
            admin.close()
    except Exception as e:  # noqa: BLE001 - only a clean-up
        echo(f"ceiling: could not delete the scratch topics {log.prefix}*: {e!r:.200}")


@contextmanager
def worker_gc() -> Iterator[None]:
    """The worker's collector thresholds for a block, the previous ones after it."""
    before = gc.get_threshold()
    gc.set_threshold(*WORKER_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass
class LoopResult:
    """What one consumer loop did: messages read, records produced, wall/CPU time."""
    messages: int = 0
    outputs: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    state_records: int = 0
    state_bytes: int = 0
    batches: int = 0
    undecodable: int = 0
    timed_out: bool = False
    timer: Timer = field(default_factory=Timer)


Output = tuple[str, bytes | None, bytes | None, Any, int | None]


async def _send_all(producer, records: list[Output]) -> int:  # type: ignore[no-untyped-def]
    """Send every (topic, key, value, headers, partition: None by key) as the worker does (whole
    record batches per topic-partition, `delivery._send_batched`) and await them; the number
    delivered."""
    from processor.stream.delivery import _send_batched
    from processor.stream.folding import OutRecord

    out = [OutRecord(topic, key, value, list(headers or []), partition)
           for topic, key, value, headers, partition in records]
    return len(await _send_batched(producer, out, None, "bench")) if out else 0


async def _loop(log: ScratchLog, max_request_size: int, handle: Callable[[Any], Any],
                result: LoopResult) -> None:
    """Read every message of the input topic from the start; `handle(batch)` turns each
    `getmany` batch into the records to send and returns a callable run after they are delivered."""
    from aiokafka import TopicPartition

    consumer = _consumer(log.bootstrap)
    producer = _producer(log.bootstrap, max_request_size)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(log.input_topic, p) for p in range(log.partitions)])
        await consumer.seek_to_beginning()
        last_seen = time.perf_counter()
        with worker_gc(), result.timer:
            while result.messages < log.messages:
                batch = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
                if not batch:
                    if time.perf_counter() - last_seen > IDLE_TIMEOUT:
                        result.timed_out = True
                        break
                    continue
                last_seen = time.perf_counter()
                result.messages += sum(len(records) for records in batch.values())
                outputs, after = handle(batch)
                result.outputs += await _send_all(producer, outputs)
                after()
                result.batches += 1
    finally:
        await producer.stop()
        await consumer.stop()


def same_work(log: ScratchLog, program_path: str | None, max_request_size: int) -> LoopResult:
    """(a): decode, `fold_partition` with a stage-1 core over a dict-backed `PartitionState` per
    partition, every output record produced, then the batch records written and committed."""
    from processor.domain.engine import Stage1
    from processor.programs import load_program
    from processor.stream.folding import Message, PartitionState, fold_partition
    from processor.stream.forwarding import bundles

    stage1 = Stage1(load_program(program_path))
    stores: dict[int, dict[bytes, bytes]] = {p: {} for p in range(log.partitions)}
    parts = {p: PartitionState(p, stores[p]) for p in range(log.partitions)}
    topic_of = {t: log.out_topic(t) for t in (*topics.OUTPUT_TOPICS, topics.REPARTITION)}
    result = LoopResult()
    by_topic: dict[str, int] = {}

    def handle(batch):  # type: ignore[no-untyped-def]
        outputs, forwards = [], []
        done = []
        for tp, records in batch.items():
            part = parts[tp.partition]
            messages = [Message(tp.topic, tp.partition, r.offset, r.value, r.timestamp, r.key) for r in records]
            folded = fold_partition(stage1, part, messages)
            forwards += folded.forwards
            for r in folded.records:
                topic = topic_of.get(r.topic) or topic_of.setdefault(r.topic, log.out_topic(r.topic))
                outputs.append((topic, r.key, r.value, r.headers or None, None))
                by_topic[r.topic] = by_topic.get(r.topic, 0) + 1
            result.undecodable += sum(1 for label, _ in folded.outcomes if label == "undecodable")
            done.append((part, folded))
        for r in bundles(forwards, log.partitions, ",".join(str(tp.partition) for tp in batch), max_request_size // 2):
            outputs.append((topic_of[topics.REPARTITION], r.key, r.value, None, r.partition))
            by_topic[r.topic] = by_topic.get(r.topic, 0) + 1

        def after() -> None:                 # outputs delivered: the state records, as the agent does
            for part, folded in done:
                if folded.dirty or part.meta.watermark != part.committed_watermark:
                    written = part.batch_records(folded.dirty)
                    stores[part.meta.partition].update(written)
                    result.state_records += len(written)
                    result.state_bytes += sum(len(k) + len(v) for k, v in written)
                    part.committed(folded.dirty)
        return outputs, after

    asyncio.run(_loop(log, max_request_size, handle, result))
    result.by_topic = by_topic
    return result


def light_work(log: ScratchLog, max_request_size: int) -> LoopResult:
    """(b): decode, a count and a sum per partner in a dict, 1.5 small JSON records an event."""
    totals: dict[str, list[int]] = {}
    result = LoopResult()
    topic = log.light_topic
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    seq = 0

    def nothing() -> None:
        pass

    def handle(batch):  # type: ignore[no-untyped-def]
        nonlocal seq
        outputs = []
        for records in batch.values():
            for r in records:
                try:
                    event = decode(r.value)
                except InvalidEvent:
                    result.undecodable += 1
                    continue
                pid = event["partner_id"]
                total = totals.get(pid)
                if total is None:
                    total = totals[pid] = [0, 0]
                total[0] += 1
                total[1] += event.get("amount_cents") or 0
                key = pid.encode()
                outputs.append((topic, key, dumps({"partner_id": pid, "events": total[0],
                                                   "amount_cents": total[1]}).encode(), None, None))
                seq += 1
                if seq % 2 == 0:
                    outputs.append((topic, key, dumps({"event_id": event["event_id"], "partner_id": pid,
                                                       "event_type": event["event_type"]}).encode(), None, None))
        return outputs, nothing

    asyncio.run(_loop(log, max_request_size, handle, result))
    result.by_topic = {topic: result.outputs}
    return result


def run_ceiling(settings: Settings, log: ScratchLog, *, program_path: str | None = None,
                echo: Echo = _quiet) -> Report:
    """Run (a), then (b), over the pre-filled scratch topic (see the module docstring)."""
    report = Report("ceiling")
    n = log.events
    report.add("fill the scratch topic (setup)", n, log.fill_seconds,
               f"{log.messages:,} msgs, aiokafka acks=all; not a figure of the loops")

    echo(f"ceiling: (a) same work: aiokafka loop + fold_partition + state + produce, {log.messages:,} msgs ...")
    a = same_work(log, program_path, settings.max_message_bytes)
    fig_a = report.timed("(a) same work: aiokafka + fold_partition" + (" (TIMED OUT)" if a.timed_out else ""),
                         n, a.timer, f"{a.messages:,} msgs, {a.batches} batches, {a.outputs:,} outputs produced, "
                                     f"{a.state_records:,} state records")
    echo("ceiling: (b) light work: decode + dict per partner + 1.5 JSON outputs an event ...")
    b = light_work(log, settings.max_message_bytes)
    fig_b = report.timed("(b) light work: aiokafka + dict fold" + (" (TIMED OUT)" if b.timed_out else ""),
                         n, b.timer, f"{b.messages:,} msgs, {b.batches} batches, {b.outputs:,} outputs produced")

    report.facts.update({
        "events": n,
        "messages": log.messages,
        "partitions": log.partitions,
        "scratch_topics": log.prefix + "*",
        "avg_message_bytes": log.avg_message_bytes,
        "ratio_a_over_b": round(fig_a.rate / fig_b.rate, 3) if fig_b.seconds > 0 and fig_a.seconds > 0 else None,
        "a_outputs_produced": a.outputs,
        "a_outputs_per_event": round(a.outputs / max(1, n), 3),
        "a_outputs_by_topic": ", ".join(f"{t} {c:,}" for t, c in sorted(a.by_topic.items())),
        "a_state_records": a.state_records,
        "a_state_bytes_per_event": round(a.state_bytes / max(1, n), 1),
        "a_undecodable": a.undecodable,
        "gc_threshold": f"{WORKER_GC_THRESHOLD} (the worker's)",
        "b_outputs_produced": b.outputs,
        "b_outputs_per_event": round(b.outputs / max(1, n), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "load_average": _load(),
    })
    if a.timed_out or b.timed_out:
        report.facts["warning"] = f"a loop stopped after {IDLE_TIMEOUT:.0f} s without a message"
    return report
