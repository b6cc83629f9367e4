"""`incentives emit` and `incentives close-period` against the real broker."""
from __future__ import annotations

import json

from kafka import KafkaConsumer, TopicPartition

from processor import topics
from processor.codec import decode

from .helpers import incentives


def _messages(settings) -> list:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    parts = [TopicPartition(topics.PARTNER_EVENTS, p) for p in consumer.partitions_for_topic(topics.PARTNER_EVENTS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out = list(consumer)
    consumer.close()
    return out


def _line(**fields) -> str:
    base = {"event_id": "E-1", "event_type": "PartnerEnrolled", "partner_id": "EMIT-1",
            "occurred_at": "2026-10-01T00:00:00Z", "name": "Emit One", "segment": "strategic", "region": "emea"}
    base.update(fields)
    return json.dumps(base)


def test_an_invalid_line_is_refused_with_line_and_field_and_nothing_is_sent(clickhouse_migrated, tmp_path):
    settings = clickhouse_migrated
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([_line(event_id="EMIT-OK-1"), _line(event_id="EMIT-OK-2", partner_id="EMIT-2"),
                               _line(event_id="EMIT-BAD", segment="galactic")]) + "\n")
    before = {m.value for m in _messages(settings)}
    result = incentives(settings, "emit", str(path))
    assert result.returncode == 2
    assert "line 3" in result.stderr and "segment" in result.stderr
    after = [m for m in _messages(settings) if m.value not in before]
    assert after == []                       # nothing half-sent


def test_emit_keys_by_partner_and_close_period_reaches_every_partition(clickhouse_migrated, tmp_path):
    settings = clickhouse_migrated
    path = tmp_path / "events.jsonl"
    path.write_text(_line(event_id="EMIT-3", partner_id="EMIT-3") + "\n")
    assert incentives(settings, "emit", str(path)).returncode == 0
    result = incentives(settings, "close-period", "2019-07")
    assert result.returncode == 0, result.stderr
    messages = _messages(settings)
    enrolled = [m for m in messages if m.key == b"EMIT-3"]
    assert len(enrolled) == 1 and decode(enrolled[0].value)["event_id"] == "EMIT-3"
    closes = [m for m in messages if m.key == b"*" and decode(m.value).get("period") == "2019-07"]
    assert sorted(m.partition for m in closes) == list(range(settings.partitions))
    assert {decode(m.value)["event_id"] for m in closes} == {"period-close:2019-07"}
