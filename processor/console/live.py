"""The live alert feed: ONE consumer of `anomaly-alerts` per console process, fanned out to every
open browser as Server-Sent Events.

One consumer, not one per browser, so ten open tabs cost the broker nothing more. Each record gets
a sequence number and the last `BUFFER` records are kept, so a page rendered at sequence N asks for
everything after N: an alert that lands between the page's ClickHouse read and the browser's
connection is not lost, and a reconnecting EventSource resumes from its `Last-Event-ID`. A browser
too slow to keep up is disconnected (its queue is bounded) and reconnects from where it was.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

BUFFER = 1000
QUEUE_MAX = 1000
RETRY_S = (1.0, 2.0, 5.0, 10.0)

Source = Callable[[], AsyncIterator[dict[str, Any]]]
Item = tuple[int, dict[str, Any]] | None          # None: the feed ends for this subscriber


class LiveFeed:
    """Sequence-numbered alert records from ``source`` to any number of subscribers."""

    def __init__(self, source: Source, buffer: int = BUFFER, queue_max: int = QUEUE_MAX) -> None:
        self._source = source
        self._recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=buffer)
        self._queue_max = queue_max
        self._subscribers: set[asyncio.Queue[Item]] = set()
        self.seq = 0
        self.connected = False
        self.errors = 0

    def publish(self, record: dict[str, Any]) -> None:
        self.seq += 1
        item = (self.seq, record)
        self._recent.append(item)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:       # too slow: end its stream, it reconnects and resumes
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def subscribe(self, after: int | None = None) -> asyncio.Queue[Item]:
        """A queue of everything published from now on, preceded by the buffered records after
        sequence ``after`` (a sequence from before a restart of this process counts as 0)."""
        queue: asyncio.Queue[Item] = asyncio.Queue(self._queue_max)
        if after is not None:
            start = after if after <= self.seq else 0
            for item in self._recent:
                if item[0] > start and queue.qsize() < self._queue_max - 1:
                    queue.put_nowait(item)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Item]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscriber's stream (the process is shutting down)."""
        for queue in list(self._subscribers):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def run(self) -> None:
        """Consume the source for ever, starting it again after an error (the broker may start
        after the console, or restart)."""
        attempt = 0
        while True:
            try:
                self.connected = True
                async for record in self._source():
                    attempt = 0
                    self.publish(record)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any client error: log, wait, consume again
                self.errors += 1
                log.warning("live alert feed: %s: %s; retrying", type(e).__name__, e)
            self.connected = False
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1


def sse_message(seq: int, record: dict[str, Any], event: str = "alert") -> bytes:
    """One Server-Sent Event; JSON has no raw newlines, so ``data`` is one line."""
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(record, separators=(',', ':'), default=str)}\n\n".encode()


def parse_after(query_value: str | None, last_event_id: str | None) -> int | None:
    """Where a subscriber resumes: the EventSource's ``Last-Event-ID`` (a reconnect) wins over
    the page's ``?after=`` (the sequence it was rendered at); garbage is ignored."""
    for raw in (last_event_id, query_value):
        if raw and raw.strip().isdigit():
            return int(raw.strip())
    return None
