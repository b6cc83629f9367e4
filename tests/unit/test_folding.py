"""The live fold never steps over an offset it has not applied (processor.stream.folding)."""
from __future__ import annotations

from processor import topics
from processor.codec import encode, from_json_line
from processor.domain.engine import Stage1
from processor.programs import load_program
from processor.stream.folding import Contiguous, Message, PartitionMeta, PartitionState, fold_partition
from tests.unit.builders import enrolled, sale

CORE = Stage1(load_program())


def _messages(offsets: list[int]) -> list[Message]:
    lines = [enrolled("P1")] + [sale("P1", f"O{i}", amount_cents=100_000, at="2026-02-01T00:00:00Z")
                                for i in range(1, 10)]
    return [Message(topics.PARTNER_EVENTS, 0, o, encode(from_json_line(lines[o]))) for o in offsets]


def _fold(meta: PartitionMeta, offsets: list[int]):  # type: ignore[no-untyped-def]
    part = PartitionState(0, {})          # an empty store
    part.meta = meta
    return fold_partition(CORE, part, _messages(offsets))


def test_a_batch_that_jumps_is_applied_up_to_the_jump_only() -> None:
    meta = PartitionMeta(0)
    result = _fold(meta, [0, 1, 2, 6, 7])
    assert meta.watermark == 2
    assert result.jumped_to == 6
    assert {r.topic for r in result.records} >= {topics.POINTS_LEDGER}
    assert len([r for r in result.records if r.topic == topics.POINTS_LEDGER]) == 2   # sales O1, O2


def test_a_batch_that_starts_beyond_the_watermark_applies_nothing() -> None:
    meta = PartitionMeta(0)
    meta.watermark = 3
    result = _fold(meta, [5, 6])
    assert meta.watermark == 3 and result.jumped_to == 5
    assert result.records == [] and result.dirty == {}


def test_redelivered_offsets_are_skipped_and_contiguous_ones_applied() -> None:
    meta = PartitionMeta(0)
    meta.watermark = 1
    result = _fold(meta, [0, 1, 2, 3])
    assert result.skipped == 2 and result.jumped_to is None and meta.watermark == 3


def _run(offsets: list[int], watermark: int) -> tuple[list[int], Contiguous]:
    run = Contiguous(offsets, watermark, offset_of=lambda o: o)
    return list(run), run


def test_contiguous_hands_out_watermark_plus_one_onwards_and_stops_at_a_gap() -> None:
    applied, run = _run([3, 4, 5, 6, 9, 10], watermark=4)
    assert applied == [5, 6] and run.skipped == 2 and run.jumped_to == 9 and run.watermark == 6


def test_contiguous_after_a_seek_back_skips_what_it_handed_out_and_stops_at_stale_later_offsets() -> None:
    # re-fetched 5..7 arrive after stale 20..21 were already queued, then a redelivered 6
    applied, run = _run([5, 6, 7, 6, 8, 20, 21], watermark=4)
    assert applied == [5, 6, 7, 8] and run.skipped == 1 and run.jumped_to == 20 and run.watermark == 8


def test_contiguous_with_nothing_new() -> None:
    applied, run = _run([1, 2], watermark=2)
    assert applied == [] and run.skipped == 2 and run.jumped_to is None and run.watermark == 2
