"""Stage 1's check that the log still holds what the state applied (processor.stream.log_check),
against the real broker: the record at the watermark must be there and be the one applied."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaProducer

from processor.stream.log_check import LogWentBackwards, check_highwater, check_record, digest


def test_the_record_at_the_watermark_must_still_be_the_one_applied(kafka_bootstrap):
    topic = f"log-check-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sent = [producer.send(topic, key=b"P1", value=f"event {i}".encode(), partition=0) for i in range(5)]
    producer.flush()
    offsets = [f.get(timeout=30).offset for f in sent]
    producer.close()
    assert offsets == [0, 1, 2, 3, 4]
    servers = [kafka_bootstrap]
    asyncio.run(check_record(servers, topic, 0, 3, digest(b"P1", b"event 3")))        # the same log
    with pytest.raises(LogWentBackwards, match=rf"{topic}\[0\]: the record at offset 3 is not the one"):
        asyncio.run(check_record(servers, topic, 0, 3, digest(b"P1", b"another event")))   # a new log
    with pytest.raises(LogWentBackwards, match=rf"{topic}\[0\]: the state has applied offsets up to 9, but the "
                                               "log no longer holds offset 9"):
        asyncio.run(check_record(servers, topic, 0, 9, digest(b"P1", b"event 9"), timeout=2))   # a shorter log


def test_a_log_that_ends_at_or_before_the_watermark_is_refused():
    check_highwater("partner-events", 1, 6816, 6817)                 # ends right after: fine
    check_highwater("partner-events", 1, -1, 0)                      # nothing applied yet
    with pytest.raises(LogWentBackwards, match=r"partner-events\[1\]: the state has applied offsets up to 6816, "
                                               r"but the log now ends at 3000"):
        check_highwater("partner-events", 1, 6816, 3000)
