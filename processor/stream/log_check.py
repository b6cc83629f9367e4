"""Refusing a log that no longer holds what the state applied: never skip it silently.

A worker's state says "applied up to offset W of partition p". If the broker lost its log (the
local broker keeps it in memory), a topic was recreated, or offsets were reset, the partition's log
is no longer the one W refers to, and every message at or below W would be taken for a redelivery
and dropped (found by a fault probe: 3,000 events dropped, lag 0, nothing logged). Two checks:

- every batch: the partition's high watermark (read after a fetch, which is exact even on the
  local broker) must be beyond W; a log that ends at or before W is not the one applied;
- after each (re)assignment, before the first batch is applied: the record at offset W must still be
  the one applied (the state keeps a digest of it), which also catches a new log that has already
  grown past W.

Either failure stops the worker with an error naming the topic, the partition and the offsets.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


class LogWentBackwards(RuntimeError):
    """The partition's log does not hold the messages the state has applied."""


def digest(key: bytes | None, value: bytes | None) -> str:
    h = hashlib.sha256()
    for part in (key, value):
        h.update(b"-" if part is None else b"+%d:" % len(part) + part)
    return h.hexdigest()[:32]


def check_highwater(topic: str, partition: int, watermark: int, highwater: int | None) -> None:
    if highwater is not None and watermark >= 0 and highwater <= watermark:
        raise LogWentBackwards(
            f"{topic}[{partition}]: the state has applied offsets up to {watermark}, but the log now ends "
            f"at {highwater} (high watermark): the log was lost, recreated or reset. Stopping rather than "
            f"skipping offsets 0..{watermark} of the new log; reset the state explicitly (incentives dev up "
            f"archives it when it starts a new broker) or restore the log.")


async def check_record(bootstrap: list[str], topic: str, partition: int, offset: int,
                       expected: str | None, timeout: float = 10.0) -> None:
    """The record at `offset` must still be there with the digest the state recorded for it."""
    if offset < 0 or expected is None:
        return
    async with reading(bootstrap, topic, partition, offset) as (consumer, tp):
        found: Any = None
        try:
            batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=int(timeout * 1000), max_records=1),
                                           timeout + 5)
            found = next(iter(batch.get(tp, [])), None)
        except Exception as exc:  # noqa: BLE001 - out of range, timeout: the record is not there
            found = exc
        if found is None or isinstance(found, Exception) or found.offset != offset:
            raise LogWentBackwards(
                f"{topic}[{partition}]: the state has applied offsets up to {offset}, but the log no longer "
                f"holds offset {offset} ({found!r}): it was lost, recreated or reset. Stopping rather "
                f"than skipping; reset the state explicitly or restore the log.")
        if digest(found.key, found.value) != expected:
            raise LogWentBackwards(
                f"{topic}[{partition}]: the record at offset {offset} is not the one the state applied "
                f"(its digest differs): the log was recreated or reset. Stopping rather than skipping "
                f"offsets 0..{offset} of the new log.")


@asynccontextmanager
async def reading(bootstrap: list[str], topic: str, partition: int, offset: int
                  ) -> AsyncIterator[tuple[AIOKafkaConsumer, TopicPartition]]:
    """A consumer of its own (no group) on `topic[partition]`, positioned at `offset`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="none", group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        yield consumer, tp
    finally:
        await consumer.stop()
