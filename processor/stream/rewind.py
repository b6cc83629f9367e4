"""Resuming from the state's own watermark when the committed offset ran ahead of the state.

Faust can commit offsets whose effects never reached the changelog (STACK.md lists the holes), and
changelog recovery on the local broker can miss a partition's last records. Either way the first
message a partition delivers after a restart lies beyond `watermark + 1`, the offset after the last
message the recovered state has applied. The agent then seeks back to `watermark + 1` and drops the
batch's messages of that partition; they come again in order. If the same rewind keeps failing (the
log no longer has those offsets), it gives up after a few tries, says so, and goes on.
"""
from __future__ import annotations

import asyncio
import logging

from processor.stream import metrics
from processor.stream.folding import meta_key

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20


class Rewinder:
    def __init__(self) -> None:
        self._attempts: dict[tuple[str, int, int], int] = {}

    def target(self, topic: str, partition: int, watermark: int, first_offset: int) -> int | None:
        """The offset to seek back to, or None to process the batch as it is."""
        if first_offset <= watermark + 1:
            return None
        key = (topic, partition, watermark + 1)
        tries = self._attempts.get(key, 0) + 1
        self._attempts[key] = tries
        if tries > MAX_ATTEMPTS:
            if tries == MAX_ATTEMPTS + 1:
                log.error("%s[%d]: cannot re-read offsets %d..%d; going on without them", topic, partition,
                          watermark + 1, first_offset - 1)
            return None
        metrics.REWINDS.labels(topic=topic, partition=str(partition)).inc()
        log.warning("%s[%d]: state has applied up to offset %d but delivery resumed at %d; re-reading",
                    topic, partition, watermark, first_offset)
        return watermark + 1


def rewind_after_recovery(app, topic: str, table, watermark_of) -> None:  # type: ignore[no-untyped-def]
    """After a rebalance: any assigned partition of `topic` whose consumer position is beyond the
    recovered state's watermark + 1 is sought back, so nothing between them is skipped, even when
    no new message arrives to reveal the gap. Runs once recovery has completed, because Faust seeks
    every stream partition to its committed offset at the very end of recovery."""
    asyncio.ensure_future(_rewind_when_recovered(app, topic, table, watermark_of))


async def _rewind_when_recovered(app, topic: str, table, watermark_of) -> None:  # type: ignore[no-untyped-def]
    await app.tables.recovery.completed.wait()
    for tp in sorted(app.consumer.assignment()):
        if tp.topic != topic:
            continue
        position = await app.consumer.position(tp)
        watermark = watermark_of(table.get(meta_key(tp.partition)))
        if position is not None and position > watermark + 1:
            metrics.REWINDS.labels(topic=topic, partition=str(tp.partition)).inc()
            log.warning("%s[%d]: position %d is beyond the state's watermark %d after recovery; re-reading",
                        topic, tp.partition, position, watermark)
            await app.consumer.seek(tp, watermark + 1)
