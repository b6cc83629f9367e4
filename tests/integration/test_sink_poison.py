"""Poison cannot halt the ClickHouse sink, and a log that went backwards stops it loudly.

Arbitrary keys, values and headers (tombstones, empty, huge, garbage, non-UTF-8 keys, missing or
garbage headers, even a header key that is not UTF-8, which aiokafka cannot parse) are produced to
fresh topics of the real test broker, read by the sink's own consumer (`SinkConsumer`), mapped and
written by the sink's own batch path (`project_batch`) into a scratch database of the real test
ClickHouse. Every record must come out as exactly one row, skip (undecodable partner events, which
stage 1 dead-letters) or `rejections` row; nothing may raise.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from processor.codec import encode, from_json_line
from processor.config import Settings
from processor.stream import sink_consumer as sc
from projections import sink as projection
from projections.migrate import client, migrate

KINDS = ("events", "ledger", "tier_changes", "alerts", "redemptions", "rejections")
PARTITIONS = 2
HUGE = b"\xff" * 2_000_000

LEDGER = {"entry_id": "PZ:1", "partner_id": "PZ", "seq": 1, "account": "points", "kind": "earn",
          "delta_available": 100, "delta_held": 0, "balance_available": 100, "balance_held": 0,
          "rule_id": "earn.base", "rules_version": "v1", "source_event_id": "e1",
          "occurred_at": "2026-10-05T12:00:00Z", "explanation": "earn 100", "prev_hash": "0" * 64, "hash": "ab" * 32}
GOOD: dict[str, bytes] = {
    "events": encode(from_json_line(json.dumps({
        "event_id": "PZ-enrol", "event_type": "PartnerEnrolled", "partner_id": "PZ",
        "occurred_at": "2026-01-01T00:00:00Z", "name": "Poison", "segment": "strategic", "region": "emea"}))),
    "ledger": json.dumps(LEDGER).encode(),
    "tier_changes": json.dumps({"change_id": "PZ:t1", "partner_id": "PZ", "from_tier": "registered",
                                "to_tier": "silver", "reason": "upgrade", "source_event_id": "e1",
                                "occurred_at": "2026-10-05T12:00:00Z", "rules_version": "v1"}).encode(),
    "alerts": json.dumps({"alert_id": "PZ:a1", "alert_type": "duplicate_order", "severity": "high",
                          "partner_id": "PZ", "trigger_event_id": "e7", "hold_order_id": None, "evidence": "x",
                          "status": "open", "version": 1, "occurred_at": "2026-10-05T12:00:00Z",
                          "resolved_by": "", "held_points": 0}).encode(),
    "redemptions": json.dumps({"redemption_id": "PZ:r1", "partner_id": "PZ", "decision": "approved",
                               "reason": "", "reward": "merchandise", "points": 500, "source_event_id": "e2",
                               "occurred_at": "2026-10-05T12:00:00Z"}).encode(),
    "rejections": b"\xc3\x01original",
}
GOOD_DLQ_HEADERS = [("reason", b"invalid_amount"), ("source", b"partner-events:1:7"), ("event_id", b"e9"),
                    ("rejection", json.dumps({"event_id": "e9", "reason": "invalid_amount", "partner_id": "PZ",
                                              "event_type": "SaleRecorded", "occurred_at": None}).encode())]


class RawHeaderKey(str):
    """A header key whose wire bytes are not UTF-8 (kafka-python encodes header keys with `.encode`)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        key = super().__new__(cls, raw.decode("latin-1"))
        key.raw = raw
        return key

    def encode(self, *_args: Any, **_kwargs: Any) -> bytes:  # type: ignore[override]
        return self.raw


# ----------------------------------------------------------------------------------------------
# an event loop in a thread (so the consumer keeps its group heartbeats between examples)


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        admin.close()


async def make_reader(*args: Any, **kwargs: Any) -> sc.SinkConsumer:
    """aiokafka consumers must be built inside their event loop."""
    return sc.SinkConsumer(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# the poison property


@dataclass
class Scratch:
    topics: dict[str, str]                  # kind -> topic
    tables: dict[str, str]                  # topic -> table
    reader: sc.SinkConsumer
    producer: KafkaProducer
    ch: projection.ClickHouseSink
    settings: Settings
    unmappable: list[str]


@pytest.fixture(scope="module")
def scratch(loop: Loop, kafka_bootstrap: str, clickhouse_migrated: Settings) -> Iterator[Scratch]:
    run_id = uuid.uuid4().hex[:8]
    kind_topics = {kind: f"poison-{run_id}-{kind}" for kind in KINDS}
    create_topics(kafka_bootstrap, list(kind_topics.values()), PARTITIONS)
    ch_settings = replace(clickhouse_migrated, clickhouse_database=f"incentives_poison_{run_id}")
    migrate(ch_settings)
    reader = loop.run(make_reader(kafka_bootstrap, f"poison-{run_id}-sink", list(kind_topics.values()),
                                  session_timeout_ms=6000, heartbeat_interval_ms=2000))
    loop.run(reader.start())
    deadline = time.monotonic() + 30
    while len(reader.consumer.assignment()) < len(KINDS) * PARTITIONS:
        assert time.monotonic() < deadline, "the sink consumer got no assignment"
        loop.run(reader.next_batch(200))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0, max_request_size=8 * 1024 * 1024,
                             acks="all")
    sink = projection.ClickHouseSink(ch_settings, max_wait=30.0)
    try:
        yield Scratch(kind_topics, {t: k for k, t in kind_topics.items()}, reader, producer, sink, ch_settings, [])
    finally:
        producer.close()
        loop.run(reader.stop())
        sink.close()
        client(ch_settings, database="default").execute(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")


def produce(producer: KafkaProducer, topic: str, partition: int, key: bytes | None, value: bytes | None,
            headers: list[tuple[str, bytes]]) -> int:
    """One record in a produce request of its own (so a record aiokafka cannot parse spoils no
    neighbour in its record batch); its offset."""
    if (key is None and value is None) or any(isinstance(k, RawHeaderKey) for k, _ in headers):
        # what KafkaProducer.send refuses but the broker holds (a keyless tombstone, a non-UTF-8
        # header key): straight into the producer's accumulator
        producer.partitions_for(topic)
        future, *_ = producer._accumulator.append(KafkaTopicPartition(topic, partition), int(time.time() * 1000),
                                                  key, value, headers, abort_on_new_batch=False)
        producer._sender.wakeup()
    else:
        future = producer.send(topic, value=value, key=key, partition=partition, headers=headers)
    producer.flush()
    return future.get(timeout=30).offset


header_keys = st.one_of(st.sampled_from(["rejection", "reason", "source", "event_id", "partner_id", "x", ""]),
                        st.text(max_size=8),
                        st.just(RawHeaderKey(b"\xff\xfe-bad")))
header_values = st.one_of(st.binary(max_size=30),
                          st.sampled_from([b"{}", b"[1]", b'{"reason": "r"}', b'{"reason": "r", "occurred_at": "x"}',
                                           b"partner-events:0:1", b"\xff", b""]))
values = st.one_of(st.none(), st.just(b""), st.binary(max_size=300),
                   st.sampled_from(["GOOD", "HUGE", b"null", b"[]", b"{}", b"{",
                                    json.dumps({**LEDGER, "seq": -1}).encode(),
                                    json.dumps({**LEDGER, "occurred_at": "9999-12-31T23:59:59Z"}).encode(),
                                    json.dumps({**LEDGER, "explanation": "\ud800"}).encode()]))
records = st.tuples(st.sampled_from(KINDS), st.integers(0, PARTITIONS - 1),
                    st.one_of(st.none(), st.binary(max_size=12), st.just(b"\xff\xfe\xfd")),
                    values,
                    st.one_of(st.just("GOOD_DLQ"), st.lists(st.tuples(header_keys, header_values), max_size=4)))


def _materialise(kind: str, value: Any, headers: Any) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    if value == "GOOD":
        value = GOOD[kind]
    elif value == "HUGE":
        value = HUGE
    return value, list(GOOD_DLQ_HEADERS) if headers == "GOOD_DLQ" else headers


@settings(max_examples=25, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(st.lists(records, min_size=1, max_size=8))
@example([("ledger", 0, None, None, []), ("rejections", 1, b"\xff", None, "GOOD_DLQ"),
          ("events", 0, b"k", "HUGE", []), ("alerts", 1, None, b"\xff\xfe", [(RawHeaderKey(b"\xff"), b"v")]),
          ("ledger", 0, b"\xfe", "GOOD", []), ("events", 1, None, "GOOD", "GOOD_DLQ")])
def test_no_record_can_halt_the_sink(loop, scratch, records):
    produced: dict[tuple[str, int, int], tuple[str, bytes | None, bool]] = {}
    for kind, partition, key, raw_value, raw_headers in records:
        value, headers = _materialise(kind, raw_value, raw_headers)
        topic = scratch.topics[kind]
        offset = produce(scratch.producer, topic, partition, key, value, headers)
        poisoned = any(isinstance(k, RawHeaderKey) for k, _ in headers)
        produced[(topic, partition, offset)] = (kind, value, poisoned)

    seen: dict[tuple[str, int, int], str] = {}
    deadline = time.monotonic() + 30
    while set(seen) != set(produced):
        assert time.monotonic() < deadline, f"not consumed: {sorted(set(produced) - set(seen))}"
        batch = loop.run(scratch.reader.next_batch(300))
        if not len(batch):
            continue
        mapped = loop.run(sc.project_batch(scratch.reader, batch, lambda rows: write(scratch.ch, rows),
                                            scratch.tables),
                          timeout=60)
        scratch.unmappable += mapped.unmappable
        assert sum(len(rows) for rows in mapped.rows.values()) + len(mapped.skipped) == len(batch)
        unmappable, skipped = set(mapped.unmappable), set(mapped.skipped)
        for m in batch.messages:
            where = (m.topic, m.partition, m.offset)
            assert where not in seen, f"{where} delivered twice"
            name = f"{m.topic}:{m.partition}:{m.offset}"
            seen[where] = "unmappable" if name in unmappable else "skipped" if name in skipped else "row"
        for u in batch.unreadable:
            seen[(u.topic, u.partition, u.offset)] = "unreadable"

    for where, (kind, value, poisoned) in produced.items():
        outcome = seen[where]
        if poisoned:
            assert outcome == "unreadable", (where, outcome)
            continue
        assert outcome != "unreadable", where
        if value == GOOD[kind] and kind != "rejections":
            assert outcome == "row", (where, outcome)
        if kind == "events":
            assert outcome in ("row", "skipped"), (where, outcome)
        else:
            assert outcome in ("row", "unmappable"), (where, outcome)
    # the sink's lag is known and zero for every partition it holds
    for tp in scratch.reader.consumer.assignment():
        assert REGISTRY.get_sample_value("incentives_sink_lag", {"topic": tp.topic,
                                                                 "partition": str(tp.partition)}) == 0


def write(sink: projection.ClickHouseSink, rows: dict[str, list[projection.Row]]) -> None:
    for table, table_rows in rows.items():
        sink.write(table, table_rows, mapped=True)


def test_the_rejections_of_unmappable_records_are_in_clickhouse(loop, scratch):
    """Runs after the property (file order): every unmappable record is a rejections row."""
    assert scratch.unmappable, "the property produced no unmappable record"
    sources = sorted(set(scratch.unmappable))
    db = scratch.settings.clickhouse_database
    found = client(scratch.settings).execute(
        f"SELECT count() FROM {db}.rejections FINAL WHERE reason = 'undecodable' AND source IN %(s)s",
        {"s": tuple(sources)})[0][0]
    assert found == len(sources)
    # stopping the consumer drops its lag series
    topic = scratch.topics["ledger"]
    loop.run(scratch.reader.stop())
    assert REGISTRY.get_sample_value("incentives_sink_lag", {"topic": topic, "partition": "0"}) is None


# ----------------------------------------------------------------------------------------------
# logs that go backwards


async def _commit_for_group(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def _read_until_error(reader: sc.SinkConsumer, timeout: float = 30.0,
                           want: int | None = None) -> BaseException | list[int]:
    """Run the reader until it raises (the error) or has `want` records or `timeout` passed (their offsets)."""
    offsets: list[int] = []
    await reader.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (want is None or len(offsets) < want):
            try:
                batch = await reader.next_batch(300)
            except Exception as exc:  # noqa: BLE001
                return exc
            offsets += [m.offset for m in batch.messages]
            await reader.commit(batch.offsets())
        return offsets
    finally:
        await reader.stop()


def _produce_plain(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(n):
        producer.send(topic, b"v%d" % i, partition=0)
    producer.flush()
    producer.close()


def test_a_committed_offset_beyond_the_log_stops_the_sink(loop, kafka_bootstrap):
    """The group's offset is past the end of the log (the topic was recreated, the broker lost its
    log): the broker answers an empty fetch with a high watermark below it; the sink must say so."""
    topic, group = f"backwards-{uuid.uuid4().hex[:8]}", f"backwards-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic], 1)
    _produce_plain(kafka_bootstrap, topic, 5)
    loop.run(_commit_for_group(kafka_bootstrap, group, TopicPartition(topic, 0), 100))
    reader = loop.run(make_reader(kafka_bootstrap, group, [topic], session_timeout_ms=6000,
                                  heartbeat_interval_ms=2000))
    error = loop.run(_read_until_error(reader), timeout=60)
    assert isinstance(error, sc.LogWentBackwards), error
    assert (error.topic, error.partition) == (topic, 0)
    assert "position 100" in str(error) and "high watermark is 5" in str(error)


def test_a_committed_offset_that_vanished_stops_the_sink(loop, kafka_bootstrap):
    """This process committed an offset, and the group no longer has one (a broker restarted with
    an empty log): not a fresh group, so no silent start from the beginning."""
    topic, group = f"vanished-{uuid.uuid4().hex[:8]}", f"vanished-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic], 1)
    _produce_plain(kafka_bootstrap, topic, 3)
    reader = loop.run(make_reader(kafka_bootstrap, group, [topic], session_timeout_ms=6000,
                                  heartbeat_interval_ms=2000, committed_memory={TopicPartition(topic, 0): 40}))
    error = loop.run(_read_until_error(reader), timeout=60)
    assert isinstance(error, sc.LogWentBackwards), error
    assert "committed offset 40" in str(error) and "no committed offset" in str(error)
    # a fresh group (nothing committed by this process) reads the same partition from the beginning
    fresh = loop.run(make_reader(kafka_bootstrap, f"{group}-fresh", [topic], session_timeout_ms=6000,
                                 heartbeat_interval_ms=2000))
    assert loop.run(_read_until_error(fresh, want=3), timeout=60) == [0, 1, 2]
