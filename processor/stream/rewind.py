"""Resuming from the state's own watermark when the committed offset ran ahead of the state.

Faust can commit offsets whose effects never reached the changelog (STACK.md lists the holes), and
changelog recovery on the local broker can miss a partition's last records. Either way the
committed offset of a partition can lie beyond `watermark + 1`, the offset after the last message
the recovered state has applied. Two guards bring the partition back to the watermark:

- `resume_from_state(topic, watermark_of)` registers a state-bearing topic: every time Faust seeks its partitions
  to the committed offsets (end of recovery, every rebalance, a fetch while the flow is stopped),
  a hook installed by `faust_patches` seeks any partition whose position is beyond the watermark
  back to `watermark + 1`, before the flow resumes. This covers the case where no new message ever
  arrives to reveal the gap.
- `Rewinder.rewind(...)`, for every batch: offsets of a partition are contiguous, so a message
  beyond `watermark + 1` means the ones in between were not delivered (the seek above, or stale
  messages already fetched before a seek back, still queued in Faust). The fold stops at it and
  the partition is sought back to `watermark + 1`; the messages come again in order. It never
  gives up while the log still holds the missing offsets (skipping them would lose money
  silently); only offsets the log no longer has (retention) are passed over, loudly.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processor.stream import faust_patches, metrics

log = logging.getLogger(__name__)

#: A rewind repeated this often is logged at error level (it should converge in a few tries).
LOUD_AFTER = 10


@dataclass(frozen=True)
class _Resumable:
    topic: str
    watermark_of: Callable[[int], int]


_registered: list[_Resumable] = []


def resume_from_state(topic: str, watermark_of: Callable[[int], int]) -> None:
    """Register `topic`, whose stored applied-offset watermark of a partition is
    `watermark_of(partition)`, for the after-seek check."""
    _registered.append(_Resumable(topic, watermark_of))
    faust_patches.after_seek(clamp_to_state)


async def clamp_to_state(consumer: Any) -> None:
    """Seek every assigned partition of a registered topic whose position is beyond its state's
    watermark + 1 back to it. Called right after Faust seeks to the committed offsets."""
    assigned = consumer.assignment()
    for item in _registered:
        for tp in sorted(tp for tp in assigned if tp.topic == item.topic):
            watermark = item.watermark_of(tp.partition)
            position = await consumer.position(tp)
            if position is not None and position > watermark + 1:
                metrics.REWINDS.labels(topic=tp.topic, partition=str(tp.partition)).inc()
                log.warning("%s[%d]: committed position %d is beyond the state's watermark %d; "
                            "resuming from %d", tp.topic, tp.partition, position, watermark, watermark + 1)
                await consumer.seek(tp, watermark + 1)


class Rewinder:
    """Seeks a partition back when a batch jumped over offsets the state has not applied."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._attempts: dict[Any, tuple[int, int]] = {}     # tp -> (offset sought, times in a row)

    async def rewind(self, tp: Any, watermark: int, jumped_to: int) -> int:
        """The fold of `tp` stopped at `jumped_to`, beyond `watermark + 1`: seek back so the missing
        offsets come again in order, and return the watermark to record. That is `watermark` itself,
        unless the log no longer holds `watermark + 1` (retention): then those offsets cannot be
        applied by anyone; the partition resumes at the log's start, loudly, and the returned
        watermark says so. Call it with no table context set: it awaits the consumer."""
        wanted = watermark + 1
        metrics.REWINDS.labels(topic=tp.topic, partition=str(tp.partition)).inc()
        earliest = (await self._app.consumer.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest > wanted:
            log.error("%s[%d]: offsets %d..%d are no longer in the log (it starts at %d); they cannot be "
                      "applied. Going on from %d.", tp.topic, tp.partition, wanted, earliest - 1, earliest,
                      earliest)
            wanted = earliest
        else:
            last, tries = self._attempts.get(tp, (None, 0))
            tries = tries + 1 if last == wanted else 1
            self._attempts[tp] = (wanted, tries)
            log.log(logging.ERROR if tries >= LOUD_AFTER else logging.WARNING,
                    "%s[%d]: state has applied up to offset %d but the next message delivered is %d; "
                    "re-reading from %d (attempt %d)", tp.topic, tp.partition, watermark, jumped_to,
                    wanted, tries)
        await self._app.consumer.seek(tp, wanted)
        return wanted - 1


class StallWatch:
    """Seeks a partition back to `watermark + 1` when its state lags the log and has not moved for
    more than `ticks` checks in a row (the stage's timer calls `check` every few seconds).

    Why: a seek back (`Rewinder`, `clamp_to_state`) does not stop Faust's consumer from handing
    over the rest of a fetch made before it. Those stale messages move Faust's read offset past the
    offsets being read again, and Faust then drops them when they come (`offset < read offset`,
    in `Consumer._drain_messages`). While new messages keep arriving, the next one shows the gap and
    the `Rewinder` seeks again (the worker logs "attempt 2"); at the tail of the log nothing new
    arrives, and the partition would wait for ever with messages it has not applied (found by
    `incentives chaos --full`: two partners one event short after the stream ended). A seek while
    the stage is merely busy costs a re-read: everything at or below the watermark is skipped."""

    def __init__(self, app: Any, ticks: int = 2) -> None:
        self._app, self.ticks = app, ticks
        self._seen: dict[Any, tuple[int, int]] = {}      # tp -> (watermark, checks without progress)

    async def check(self, tp: Any, watermark: int, highwater: int | None) -> bool:
        """True when it sought the partition back."""
        if highwater is None or highwater <= watermark + 1:
            self._seen.pop(tp, None)
            return False
        last, still = self._seen.get(tp, (None, 0))
        still = still + 1 if last == watermark else 0
        self._seen[tp] = (watermark, still)
        if still <= self.ticks:
            return False
        metrics.REWINDS.labels(topic=tp.topic, partition=str(tp.partition)).inc()
        log.warning("%s[%d]: %d messages after offset %d are not applied and none came for %d checks; "
                    "reading again from %d", tp.topic, tp.partition, highwater - watermark - 1, watermark,
                    still, watermark + 1)
        self._seen[tp] = (watermark, 0)
        await self._app.consumer.seek(tp, watermark + 1)
        return True
