"""What the two stage agents share: how a batch is gathered, the batch loop that stops the worker
on an error, and grouping a batch by partition (dropping partitions this worker no longer holds).

How a batch is gathered (`take_batches`). Faust's `take_events(max, within)` waits a fixed window
that starts when the previous batch was handed over, so on a quiet stream an event waits up to
`within` at every stage it passes (three hops for a cross-partner alert: 2.4 to 4.1 s measured with
a 1 s window). Here the wait starts with the batch's first event, and it goes as soon as the stream
is not backed up:

- wait (without a timeout) for a first event;
- then wait `linger` for more; a batch goes when `max_` events are there, or when the last `linger`
  brought fewer than `backlog` new ones (the stream is not backed up: waiting longer buys little);
- while each `linger` keeps bringing `backlog` or more (a backlog after an outage, a replay, a busy
  quarter-end), keep gathering up to `max_` events or `within` seconds, for the large batches that
  amortise a batch's fixed costs (state records, changelog and producer round trips).

So a quiet stream costs `linger` per hop, and a busy one gets batches as large as before.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mode.utils.aiter import aiter
from mode.utils.futures import notify

from processor.stream.delivery import crash_stop
from processor.stream.wiring import BATCH_BACKLOG, BATCH_LINGER, BATCH_MAX, BATCH_WITHIN, app


async def take_batches(stream: Any, max_: int, *, linger: float, within: float,
                       backlog: int) -> AsyncIterator[list]:
    """Batches of the stream's events (see the module docstring for when a batch goes). Events are
    acked after the caller is done with the batch, as with Faust's `take_events`, whose machinery
    (a stream processor filling the buffer, passive draining, manual acks) this reuses."""
    events: list = []
    first = asyncio.Event()
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future | None = None
    clock = asyncio.get_running_loop().time

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:          # a batch is being handed over: wait for it to be taken
            try:
                await consuming
            finally:
                consuming = None
        events.append(stream.current_event)
        first.set()
        if len(events) >= max_:
            full.set()
            consumed.clear()
            await stream.wait(consumed)    # never more than max_ events in a batch
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False             # acked below, once the caller is done with the batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(first)
            deadline = clock() + within
            seen = len(events)
            while not full.is_set() and (left := deadline - clock()) > 0:
                await stream.wait_for_stopped(full, timeout=min(linger, left))
                if len(events) - seen < backlog:
                    break                  # the stream is not backed up: go now
                seen = len(events)
            if not events:
                first.clear()
                continue
            # from here until `notify(consuming)` nothing is added (add_to_buffer waits for it)
            consuming = asyncio.get_running_loop().create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                first.clear()
                notify(consuming)
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add_to_buffer)


async def run_batches(stream: Any, process: Callable[[Any, list], Awaitable[None]], name: str) -> None:
    """Feed `process` one batch at a time. Faust acks a batch even when the agent body raises, so
    any unexpected error stops the worker at once (`crash_stop`) before a commit."""
    async for events in take_batches(stream, BATCH_MAX, linger=BATCH_LINGER, within=BATCH_WITHIN,
                                     backlog=BATCH_BACKLOG):
        try:
            await process(stream, events)
        except Exception:
            crash_stop(name)


def by_held_partition(events: list) -> dict[int, list]:
    """The batch's events per partition, in offset order. A message delivered across a rebalance
    for a partition that is now elsewhere is not ours to apply (see faust_patches.py)."""
    held = app.consumer.assignment()
    grouped: dict[int, list] = defaultdict(list)
    for ev in events:
        if ev.message.tp in held:
            grouped[ev.message.partition].append(ev)
    return grouped
