"""Where `Rewinder` sends a partition back to (processor.stream.rewind). The consumer here is a
recorder of seeks, not a Kafka stand-in: the seeks themselves are exercised against the real broker
by tests/integration/test_worker_crash.py."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from processor.stream.rewind import Rewinder

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
