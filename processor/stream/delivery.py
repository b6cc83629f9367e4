"""Sending records on Faust's own producer and waiting until every one is delivered.

A stage writes a batch in this order, each step only after the one before is delivered: output
records, then state records to the changelog, then the local store; Faust commits the input offsets
after the agent body returns. So a crash can repeat outputs (harmless: their ids are deterministic)
but never lose them, and no watermark or offset is ever ahead of what it depends on.

A transient failure (broker unreachable, a timeout) is retried with backoff, logged at most every
30 s: nothing after it moves meanwhile. A record that can never be delivered (larger than the
producer's `max_request_size`, INCENTIVES_MAX_MESSAGE_BYTES) raises `Undeliverable`, and the stage
agent stops the worker (`crash_stop`): retrying it forever would stall silently.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from processor.stream.folding import OutRecord
from processor.topics import partition_of

log = logging.getLogger(__name__)

#: bytes a record takes in a request besides its key, value and headers (batch and record headers)
RECORD_OVERHEAD = 128


class Undeliverable(RuntimeError):
    """A record that no retry can deliver: the worker must stop before anything depends on it."""


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> int:
    return (RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            + sum(len(k) + len(v) for k, v in headers or ()))


def check_sizes(records: Sequence[OutRecord], limit: int, what: str) -> None:
    for r in records:
        size = record_size(r.key, r.value, r.headers)
        if size > limit:
            raise Undeliverable(
                f"{what} record for topic {r.topic} key {r.key[:200] if r.key else r.key!r} is {size:,} "
                f"bytes, over the producer limit of {limit:,} (INCENTIVES_MAX_MESSAGE_BYTES)")


class RateLimitedLog:
    """At most one line per `every` seconds for a repeating failure, with how often it happened."""

    def __init__(self, logger: logging.Logger, every: float = 30.0) -> None:
        self._log, self._every = logger, every
        self._last = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} similar failures not logged)"
        self._log.warning(msg, *args)
        self._last, self._suppressed = now, 0


_failures = RateLimitedLog(log)


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where a record landed."""
    topic: str
    partition: int
    offset: int


class _KeyPartitions:
    """The partition of a keyed record, as the default partitioner picks it (murmur2 of the key),
    with each topic's partition count from the producer's metadata; cached, since most keys repeat
    (a partner's ledger entries, tier changes and alerts)."""

    MAX_KEYS = 200_000

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.of_key: dict[tuple[str, bytes], int] = {}

    async def count(self, producer: Any, topic: str) -> int:
        """How many partitions `topic` has (asked once per topic: records are addressed by it)."""
        count = self.counts.get(topic)
        if count is None:
            count = self.counts[topic] = len(await producer.partitions_for(topic))
        return count

    async def __call__(self, producer: Any, topic: str, key: bytes | None) -> int:
        count = await self.count(producer, topic)
        if key is None:                                   # no key: any partition (the default spreads them)
            return random.randrange(count)
        p = self.of_key.get((topic, key))
        if p is None:
            if len(self.of_key) >= self.MAX_KEYS:
                self.of_key.clear()
            p = self.of_key[(topic, key)] = partition_of(key, count)
        return p


_partition_of = _KeyPartitions()


async def partition_count(producer: Any, topic: str) -> int:
    """How many partitions `topic` has, from `producer`'s metadata (cached)."""
    return await _partition_of.count(producer, topic)


async def _send_batched(producer: Any, records: Sequence[OutRecord], partition: int | None,
                        what: str) -> list[Delivered]:
    """Every record in record batches, one run of batches per topic-partition in the records'
    order, each batch handed to the producer whole (`send_batch`): no future per record, and as
    few requests as the batch size allows. Returns where each landed, in the records' order."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        p = r.partition if r.partition is not None else partition
        if p is None:
            p = await _partition_of(producer, r.topic, r.key)
        groups.setdefault((r.topic, p), []).append(i)
    sent: list[tuple[Any, str, int, list[int]]] = []
    for (topic, p), members in groups.items():
        builder, in_batch = producer.create_batch(), list[int]()
        for i in members:
            r = records[i]
            if builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers or []) is None:
                sent.append((await producer.send_batch(builder, topic, partition=p), topic, p, in_batch))
                builder, in_batch = producer.create_batch(), []
                if builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers or []) is None:
                    raise Undeliverable(f"{what} record for topic {topic} does not fit in a record batch")
            in_batch.append(i)
        sent.append((await producer.send_batch(builder, topic, partition=p), topic, p, in_batch))
    landed: list[Delivered] = [None] * len(records)  # type: ignore[list-item]
    for future, topic, p, in_batch in sent:
        base = (await future).offset
        for n, i in enumerate(in_batch):
            landed[i] = Delivered(topic, p, base + n)
    return landed


async def deliver(app, records: Sequence[OutRecord], *, partition: int | None = None,  # type: ignore[no-untyped-def]
                  limit: int | None = None, what: str = "output") -> list[Delivered]:
    """Send every record (to its own partition if it names one, else to `partition`, else by its
    key as the default partitioner would) and wait for all; return where each landed, in order.

    Records go in record batches on Faust's own aiokafka producer (`_send_batched`), not one
    `send` each: each `send` costs a future and a trip through the accumulator per record, and
    stage 1 sends about four records an event (outputs and state records): 30% of the worker's
    time in a profile (docs/performance.md)."""
    if not records:
        return []
    if limit is not None:
        check_sizes(records, limit, what)
    backoff = 0.2
    while True:
        try:
            return await _send_batched(app.producer._ensure_producer(), records, partition, what)
        except asyncio.CancelledError:
            raise
        except Undeliverable:
            raise
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise Undeliverable(f"{what} records refused by the producer: {exc!r}") from exc
        except Exception as exc:  # broken infrastructure: retry, never ack what was not delivered
            _failures.warning("delivery of %d %s records failed (%r); retrying every %.1fs",
                              len(records), what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def crash_stop(where: str) -> None:
    """Stop the worker at once, before Faust acks the batch and commits its offsets.

    An agent body that raises still has its events acked by Faust (STACK.md), which would skip them.
    Exiting immediately leaves the committed offsets where they were; the restarted worker resumes
    from its state's own watermark and the batch is processed again (a bug stays visible, loudly).
    """
    log.critical("%s failed; stopping the worker so that no offset is committed past it", where, exc_info=True)
    logging.shutdown()
    os._exit(70)
