"""Stage 2's fold out of its agent (processor/stream/crosspartner_fold.py), over the same partition
meta as stage 1: bundles and single records folded into their keys' state, a duplicate order found
once, redeliveries skipped, a gap stops the fold, unreadable input dead-lettered alone, and a fold
resumed from the records it wrote (or redone from a crash before the meta) finds nothing twice."""
from __future__ import annotations

import json
import pickle

from processor.codec import decode
from processor.programs import load_program
from processor.stream.crosspartner_fold import fold_crosspartner, load_meta, meta_key
from processor.stream.folding import Message
from processor.stream.log_check import digest
from processor.stream.partition_state import PartitionMeta

PROGRAM = load_program()


def claim(order: str, partner: str, event: str) -> list:
    return [f"order:{order}", {"kind": "order_claim", "order_id": order, "customer_id": "C1",
                               "partner_id": partner, "event_id": event, "occurred_at": 1_767_225_600_000}]


def bundle(*items: list) -> bytes:
    return json.dumps({"bundle": list(items)}).encode()


def msg(offset: int, value: bytes | None, key: bytes | None = b"stage1:0") -> Message:
    return Message("partner-events-repartition", 0, offset, value, None, key)


def _fold(store: dict[bytes, bytes], messages: list[Message]):  # type: ignore[no-untyped-def]
    return fold_crosspartner(PROGRAM, store, load_meta(0, store), messages)


def _write(store: dict[bytes, bytes], result, watermark: int | None = None) -> None:  # type: ignore[no-untyped-def]
    store.update(result.state_records(result.meta.watermark if watermark is None else watermark))


def test_a_duplicate_order_is_found_once_and_the_meta_follows_the_last_message() -> None:
    store: dict[bytes, bytes] = {}
    messages = [msg(0, bundle(claim("O1", "P1", "e1"))),
                msg(1, bundle(claim("O1", "P2", "e2"), claim("O2", "P1", "e3")))]
    result = _fold(store, messages)
    found = [decode(r.value) for r in result.records]
    assert {(f["partner_id"], f["alert_type"]) for f in found} == {("P1", "duplicate_order"), ("P2", "duplicate_order")}
    assert result.findings == 2 and result.dead_letters == 0
    assert result.meta.watermark == 1 and result.meta.digest == digest(b"stage1:0", messages[1].value)
    _write(store, result)
    assert load_meta(0, store) == result.meta
    # the same messages again (a redelivery): skipped, nothing found, nothing to write
    again = _fold(store, messages)
    assert again.records == [] and again.skipped == 2 and again.state_records(1) == []


def test_a_crash_before_the_meta_redoes_the_batch_without_a_second_finding() -> None:
    store: dict[bytes, bytes] = {}
    first = _fold(store, [msg(0, bundle(claim("O1", "P1", "e1")))])
    _write(store, first)
    second = _fold(store, [msg(1, bundle(claim("O1", "P2", "e2")))])
    records = second.state_records(1)
    store.update(records[:-1])                           # the keys' records landed, the meta did not
    redo = _fold(store, [msg(1, bundle(claim("O1", "P2", "e2")))])
    assert redo.meta.watermark == 1 and redo.records == []   # the claim is known: the finding went with the batch
    assert len(second.records) == 2


def test_a_gap_stops_the_fold_and_unreadable_input_is_dead_lettered_alone() -> None:
    store: dict[bytes, bytes] = {}
    messages = [msg(0, b"not json"), msg(1, bundle(claim("O1", "P1", "e1"), ["order:O9", {"kind": "nope"}], 7)),
                msg(3, bundle(claim("O1", "P2", "e2")))]
    result = _fold(store, messages)
    assert result.dead_letters == 3 and result.jumped_to == 3 and result.meta.watermark == 1
    items = [dict(r.headers).get("bundle.item") for r in result.records]
    assert items == [None, b"1", b"2"]
    assert pickle.loads(result.state_records(1)[0][1]) == {"claims": [("P1", "e1")]}


def test_a_bare_watermark_stored_before_the_meta_reads_as_one() -> None:
    assert load_meta(2, {meta_key(2): pickle.dumps(41)}) == PartitionMeta(2, watermark=41)
    assert load_meta(2, {}) == PartitionMeta(2)
