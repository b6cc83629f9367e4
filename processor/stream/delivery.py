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
import time
from collections.abc import Sequence

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from processor.stream.folding import OutRecord

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


async def deliver(app, records: Sequence[OutRecord], *, partition: int | None = None,  # type: ignore[no-untyped-def]
                  limit: int | None = None, what: str = "output") -> list:
    """Send every record (to its own partition if it names one, else to `partition`, else by key)
    and wait for all; return their metadata."""
    if limit is not None:
        check_sizes(records, limit, what)
    backoff = 0.2
    while True:
        try:
            futures = [await app.producer.send(r.topic, r.key, r.value,
                                               partition if r.partition is None else r.partition, None,
                                               r.headers or None)
                       for r in records]
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
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
