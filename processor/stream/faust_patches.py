"""Changes to Faust's consumer: deliver a message without four tasks (throughput), seek hooks, seeks
on the consumer's own thread (`_seek`), and a shorter fetch wait (latency, `FETCH_MAX_WAIT_MS`).

Faust's `Consumer._drain_messages` hands every message to the conductor inside
`Service.wait_first(callback(message), suspend_flow.wait())`, which creates and cancels several
asyncio tasks per message; on these machines that is the worker's throughput wall (STACK.md:
~3k/s with it, ~11k/s without). Here the callback is awaited directly while the flow is running,
and Faust's original `wait_first` is kept whenever the flow is suspended (a rebalance), so a stop
still interrupts a blocked delivery.

The one behaviour that changes: a message whose delivery was already under way when a rebalance
suspended the flow may reach a stream after the rebalance. The agents therefore drop messages of
partitions this worker no longer holds (`batching.by_held_partition`), and every
other message is protected by the state's watermark and event-id dedup anyway.

The body is faust-streaming 0.15.3's, otherwise unchanged; `install()` refuses other versions.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode import Service

PATCHED_VERSION = "0.15.3"


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - exercised by the worker
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
    suspended = self.suspend_flow.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


_after_seek_hooks: list[Callable[[Any], Awaitable[None]]] = []
_faust_perform_seek = faust_consumer.Consumer.perform_seek


def after_seek(hook: Callable[[Any], Awaitable[None]]) -> None:
    """Run `await hook(consumer)` each time Faust has sought the partitions to their committed
    offsets, before the flow resumes (see `processor.stream.rewind`)."""
    if hook not in _after_seek_hooks:
        _after_seek_hooks.append(hook)


async def _perform_seek(self: Any) -> None:
    await _faust_perform_seek(self)
    for hook in _after_seek_hooks:
        await hook(self)


#: The worker consumer's fetch wait. Faust hard-codes 1,500 ms; the local broker holds an empty
#: fetch for a good part of the wait even when a record arrives (measured with a bare aiokafka
#: consumer: p50 0.48 s at 1,500 ms, 0.12 s at 500 ms, 0.01 s at 50 ms), and every stage hop pays
#: it: SPEC section 5 wants alerts within a second. A busy stream's fetches return full at once.
FETCH_MAX_WAIT_MS = 100
_faust_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:  # pragma: no cover - the worker
    consumer = _faust_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS      # read by AIOKafkaConsumer.start()
    return consumer


async def _seek(self: Any, partition: Any, offset: int) -> None:  # pragma: no cover - the worker
    """aiokafka's `seek`, run on the consumer's own thread, as Faust runs every other consumer call.

    Faust calls it directly from the caller's thread, while aiokafka's fetcher runs in the consumer
    thread's event loop: the seek deletes the partition's fetched records (`Fetcher.seek_to`) under
    the fetcher's feet and wakes a future of another loop. Under repeated seeks (a partition read
    again from its watermark while stale messages keep coming) the fetcher raised `KeyError` in
    `fetched_records`, crashed, and left the worker running without input (found by
    `tests/integration/test_worker_crash.py` in CI)."""
    await self._thread.call_thread(self._thread.seek, partition, offset)


def install() -> bool:
    """Patch Faust's consumer: the after-seek hooks (the committed offset is never trusted beyond
    the state), seeks on the consumer's thread and the fetch wait always, the drain loop only if
    this is the version it was copied from; False when the drain loop was left alone."""
    faust_consumer.Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    faust_consumer.ThreadDelegateConsumer._seek = _seek  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    if faust.__version__ != PATCHED_VERSION:
        return False
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    return True
