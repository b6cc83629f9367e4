"""Where `Rewinder` sends a partition back to (processor.stream.rewind). The consumer here is a
recorder of seeks, not a Kafka stand-in: the seeks themselves are exercised against the real broker
by tests/integration/test_worker_crash.py."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from processor.stream.rewind import Rewinder, StallWatch

TOPIC_PARTITION = TP("partner-events", 2)


class SeekRecorder:
    def __init__(self, earliest: int) -> None:
        self.earliest, self.seeks = earliest, []

    async def earliest_offsets(self, *tps):  # type: ignore[no-untyped-def]
        return {tp: self.earliest for tp in tps}

    async def seek(self, tp, offset) -> None:  # type: ignore[no-untyped-def]
        self.seeks.append((tp, offset))


def _rewind(earliest: int, watermark: int, jumped_to: int) -> tuple[int, list]:
    consumer = SeekRecorder(earliest)
    rewinder = Rewinder(SimpleNamespace(consumer=consumer))
    kept = asyncio.run(rewinder.rewind(TOPIC_PARTITION, watermark, jumped_to))
    return kept, consumer.seeks


def test_a_gap_the_log_still_holds_is_read_again_and_the_watermark_kept() -> None:
    assert _rewind(earliest=0, watermark=306, jumped_to=5914) == (306, [(TOPIC_PARTITION, 307)])


def test_offsets_removed_by_retention_are_passed_over_from_the_log_start() -> None:
    assert _rewind(earliest=1000, watermark=306, jumped_to=5914) == (999, [(TOPIC_PARTITION, 1000)])


def _watch(checks: list[tuple[int, int | None]], ticks: int = 2) -> list:
    """Run `StallWatch.check` over (watermark, highwater) ticks; the seeks it made."""
    consumer = SeekRecorder(0)
    watch = StallWatch(SimpleNamespace(consumer=consumer), ticks=ticks)

    async def run() -> None:
        for watermark, highwater in checks:
            await watch.check(TOPIC_PARTITION, watermark, highwater)
    asyncio.run(run())
    return consumer.seeks


def test_a_lagging_partition_that_stops_moving_is_read_again_from_its_watermark() -> None:
    # 10 messages after offset 99 not applied, and the watermark does not move: after 2 quiet checks
    assert _watch([(99, 110)] * 3) == []
    assert _watch([(99, 110)] * 4) == [(TOPIC_PARTITION, 100)]
    assert _watch([(99, 110)] * 7) == [(TOPIC_PARTITION, 100)] * 2      # and again if still stuck


def test_a_partition_that_moves_or_has_nothing_left_is_left_alone() -> None:
    assert _watch([(99 + i, 200) for i in range(10)]) == []              # busy but progressing
    assert _watch([(199, 200)] * 10) == []                                # at the end of the log
    assert _watch([(99, None)] * 10) == []                                # nothing fetched yet
    assert _watch([(99, 110), (99, 110), (99, 110), (109, 110), (109, 110), (109, 110)]) == []
