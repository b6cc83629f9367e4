"""Poison cannot halt the stages (issue 9, item 2): any key and value the broker can hold, sent to
`partner-events` (stage 1) and to the repartition topic (stage 2), is dead-lettered with its reason
and where it came from, through the worker's real consume path, and processing goes on.

(The sink's own poison test is `test_sink_poison.py`.)
"""
from __future__ import annotations

import json
import urllib.request
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from processor import topics
from processor.codec import encode, from_json_line
from processor.devstack import worker as worker_proc

from .helpers import wait_for, worker_log_tail, worker_partners

MAX_BYTES = 4 * 1024 * 1024

keys = st.one_of(st.none(), st.binary(max_size=40), st.just(b"\xff\xfe\x00bad-utf8"),
                 st.text(max_size=20).map(str.encode))
values = st.one_of(
    st.none(),                                   # a tombstone
    st.just(b""),
    st.binary(max_size=300),
    st.just(b"\xc3\x01" + b"\x00" * 8),          # Avro marker, unknown fingerprint, no body
    st.just(b"x" * (1_500_000)),                  # larger than the worker may produce
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"null", b"1", b"[]", b'{"kind":"order_claim"}', b'{"kind":"nope"}',
                     b'{"bundle":[["order:O1",{"kind":"nope"}]]}', b'{"bundle":[1]}', b'{"bundle":']),
)
# (kafka-python refuses a record with neither key nor value; a tombstone has a key)
records = st.lists(st.tuples(keys, values).map(lambda kv: (b"k", None) if kv == (None, None) else kv),
                   min_size=1, max_size=6)


def _produce(bootstrap: list[str], topic: str, batch: list[tuple[bytes | None, bytes | None]]) -> list[str]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_BYTES, acks="all")
    try:
        sent = [producer.send(topic, key=k, value=v) for k, v in batch]
        producer.flush()
        return [f"{topic}:{m.partition}:{m.offset}" for m in (f.get(timeout=30) for f in sent)]
    finally:
        producer.close()


def _dead_letters(bootstrap: list[str]) -> dict[str, dict[str, bytes]]:
    """Every dead letter's headers, by the source (`topic:partition:offset`) it names."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    try:
        parts = [TopicPartition(topics.DLQ, p) for p in consumer.partitions_for_topic(topics.DLQ) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: dict[str, dict[str, bytes]] = {}
        idle = 0
        while idle < 3:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for msgs in batch.values():
                for m in msgs:
                    headers = dict(m.headers or [])
                    found[headers.get("source", b"").decode()] = headers
        return found
    finally:
        consumer.close()


def _still_applies(settings) -> None:
    """A valid event after the poison is applied: processing went on."""
    pid = f"AFTER-{uuid.uuid4().hex[:8]}"
    line = json.dumps({"event_id": f"{pid}-e1", "event_type": "PartnerEnrolled", "partner_id": pid,
                       "occurred_at": "2026-01-01T00:00:00Z", "name": "n", "segment": "strategic", "region": "emea"})
    _produce(settings.kafka_bootstrap_servers, topics.PARTNER_EVENTS, [(pid.encode(), encode(from_json_line(line)))])
    assert wait_for(lambda: pid in worker_partners(settings), True, timeout=60), worker_log_tail(settings)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(batch=records, topic=st.sampled_from([topics.PARTNER_EVENTS, topics.REPARTITION]))
def _poison_round(worker_settings, batch, topic) -> None:  # type: ignore[no-untyped-def]
    sources = _produce(worker_settings.kafka_bootstrap_servers, topic, batch)
    letters = wait_for(lambda: set(sources) <= set(_dead_letters(worker_settings.kafka_bootstrap_servers)),
                       True, timeout=60)
    assert letters, f"not dead-lettered: {sources}\n{worker_log_tail(worker_settings)}"
    found = _dead_letters(worker_settings.kafka_bootstrap_servers)
    for source in sources:
        headers = found[source]
        assert headers["reason"] == b"undecodable", headers       # nothing here is a readable event
        assert headers["source.topic"].decode() == topic and headers["error.class"], headers
        assert headers["stage"] == (b"stage1" if topic == topics.PARTNER_EVENTS else b"stage2"), headers
    assert worker_proc.running(worker_settings), worker_log_tail(worker_settings)


def _bundled_poison(settings) -> None:
    """A stage-1 bundle whose second record is unreadable: that record alone is dead-lettered,
    naming the bundle and the record's place in it; the first is applied (no dead letter for it)."""
    bundle = (b'{"bundle":[["customer:P-ok",{"kind":"partner_status","partner_id":"P-ok","active":true,'
              b'"event_id":"e1"}],["order:O1",{"kind":"nope"}]]}')
    [source] = _produce(settings.kafka_bootstrap_servers, topics.REPARTITION, [(b"stage1:0", bundle)])
    assert wait_for(lambda: source in _dead_letters(settings.kafka_bootstrap_servers), True, timeout=60), \
        worker_log_tail(settings)
    headers = _dead_letters(settings.kafka_bootstrap_servers)[source]
    assert headers["stage"] == b"stage2" and headers["reason"] == b"undecodable", headers
    assert headers["bundle.item"] == b"1", headers


def test_any_record_on_the_stage_topics_is_dead_lettered_and_processing_goes_on(worker):
    _poison_round(worker)
    _bundled_poison(worker)
    _still_applies(worker)
    with urllib.request.urlopen(f"{worker.web_url}/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    assert 'incentives_events_total{event_type="undecodable",outcome="undecodable"}' in metrics
