"""What the two stage agents share: the batch loop that stops the worker on an error, and grouping
a batch by partition (dropping partitions this worker no longer holds)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from processor.stream.app import BATCH_MAX, BATCH_WITHIN, app
from processor.stream.delivery import crash_stop


async def run_batches(stream: Any, process: Callable[[Any, list], Awaitable[None]], name: str) -> None:
    """Feed `process` one `take_events` batch at a time. Faust acks a batch even when the agent body
    raises, so any unexpected error stops the worker at once (`crash_stop`) before a commit."""
    async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
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
