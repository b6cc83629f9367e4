"""Pointing a Faust table at one partition for a block of synchronous code.

A Faust table reads and writes the partition of the stream's *current event*. A batch agent works
outside Faust's per-event iteration, so it sets the current event itself, and must put the old one
back before its next `await`: `take_events` fills its buffer in the background and records each
value with `stream.current_event`, so a stale event left there would be acked in place of the new
one (seen as a skipped offset and a lost message).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust import streams as faust_streams


@contextmanager
def on_partition_of(stream: Any, event: Any) -> Iterator[None]:
    previous = stream.current_event
    stream._set_current_event(event)
    try:
        yield
    finally:
        stream._set_current_event(previous)


@contextmanager
def any_partition() -> Iterator[None]:
    """Table reads in this block look the key up in every partition's store, whatever event the
    calling task's context holds (e.g. in a rebalance callback): for keys that say their partition
    themselves, like the per-partition meta."""
    token = faust_streams._current_event.set(None)
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
