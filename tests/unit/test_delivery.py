"""How `delivery.deliver` lays records into record batches (processor/stream/delivery.py): each
record in its partition (its own, the call's, or its key's by murmur2), in order within the
partition, and where each landed reported in the records' order.

The producer here is a stand-in that keeps a log per topic-partition and hands out aiokafka's real
`BatchBuilder`s: what is tested is the grouping, not Kafka (the live tests deliver through the real
broker: tests/integration/test_worker_crash.py, test_chaos.py).
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.stream.delivery import Undeliverable, deliver
from processor.stream.folding import OutRecord
from processor.topics import partition_of

PARTITIONS = {"a": 4, "b": 3}


class RecordingBuilder(BatchBuilder):
    """aiokafka's batch builder (it decides when a batch is full), keeping what it took, in order."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size, 0)
        self.taken: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp, key, value, headers=()):  # type: ignore[no-untyped-def]
        metadata = super().append(timestamp=timestamp, key=key, value=value, headers=headers)
        if metadata is not None:
            self.taken.append((key, value))
        return metadata


class Producer:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.logs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.batches = 0

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS[topic]))

    def create_batch(self) -> RecordingBuilder:
        return RecordingBuilder(self.batch_size)

    async def send_batch(self, builder: RecordingBuilder, topic: str, *, partition: int) -> asyncio.Future:
        log = self.logs.setdefault((topic, partition), [])
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=len(log)))
        log += builder.taken
        self.batches += 1
        return future


def _app(producer: Producer) -> SimpleNamespace:
    return SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))


RECORDS = st.lists(st.builds(
    OutRecord, topic=st.sampled_from(["a", "b"]), key=st.binary(min_size=1, max_size=8),
    value=st.binary(max_size=300), partition=st.one_of(st.none(), st.integers(0, 2))), max_size=60)


@settings(max_examples=150, deadline=None)
@given(records=RECORDS, batch_size=st.integers(200, 5_000), fixed=st.one_of(st.none(), st.integers(0, 2)))
def test_every_record_lands_once_in_its_partition_in_order(records, batch_size, fixed):
    producer = Producer(batch_size)
    landed = asyncio.run(deliver(_app(producer), records, partition=fixed))
    assert len(landed) == len(records)
    for r, where in zip(records, landed, strict=True):
        expected = r.partition if r.partition is not None else fixed
        if expected is None:
            expected = partition_of(r.key, PARTITIONS[r.topic])
        assert (where.topic, where.partition) == (r.topic, expected)
        assert producer.logs[(r.topic, expected)][where.offset] == (r.key, r.value)
    # in order within each partition, nothing else there
    for tp, log in producer.logs.items():
        mine = [(r.key, r.value) for r, w in zip(records, landed, strict=True) if (w.topic, w.partition) == tp]
        assert log == mine


def test_a_batch_of_records_goes_in_few_record_batches():
    producer = Producer(512 * 1024)
    records = [OutRecord("a", f"P{i % 7}".encode(), b"x" * 200) for i in range(5_000)]
    asyncio.run(deliver(_app(producer), records))
    assert producer.batches <= 4 * 3                           # ~1 MB over 4 partitions, 512 KB batches


def test_nothing_to_send_sends_nothing():
    producer = Producer(1_000)
    assert asyncio.run(deliver(_app(producer), [])) == [] and producer.batches == 0


def test_a_record_over_the_limit_is_undeliverable_before_anything_is_sent():
    producer = Producer(1_000)
    with pytest.raises(Undeliverable):
        asyncio.run(deliver(_app(producer), [OutRecord("a", b"k", b"v"), OutRecord("a", b"k", b"x" * 5_000)],
                            limit=2_000))
    assert producer.batches == 0
