"""How a partition's stage-1 state is stored (processor.stream.partition_state): bounded records at
production sizes, a partial batch read back as the committed state, and the start-up self-check."""
from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator

import pytest

from processor import topics
from processor.codec import encode, from_json_line
from processor.domain.engine import Stage1
from processor.domain.state import PartnerState
from processor.programs import load_program
from processor.stream.folding import Message, fold_partition
from processor.stream.partition_state import (
    PartitionState,
    StateCorrupt,
    core_key,
    entry_key,
    meta_key,
)
from tests.unit.builders import enrolled, sale

CORE = Stage1(load_program())


def _commit(part: PartitionState, store: dict[bytes, bytes], dirty: dict[str, int]) -> list[tuple[bytes, bytes]]:
    records = part.batch_records(dirty)
    store.update(records)
    part.committed(dirty)
    return records


@pytest.fixture
def worker_gc() -> Iterator[None]:
    """The worker's GC thresholds (processor/stream/app.py): millions of small objects otherwise
    trigger a full collection every few hundred allocations."""
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    yield
    gc.set_threshold(*before)


def test_300000_partners_on_4_partitions_keep_every_record_small(worker_gc: None) -> None:
    largest = 0
    for partition in range(4):
        store: dict[bytes, bytes] = {}
        part = PartitionState(partition, store)
        batch = part.store()
        for i in range(75_000):
            batch.offset = i
            batch.put(PartnerState(f"PARTNER-{partition}-{i:06d}"))
        records = _commit(part, store, batch.dirty)
        largest = max(largest, max(len(k) + len(v) for k, v in records))
        assert len(store[meta_key(partition)]) < 2_000          # the meta no longer lists partners
        again = PartitionState(partition, store)                # a restarted worker
        assert len(again.member_ids) == 75_000 and again.member_ids == part.member_ids
    print(f"\n300,000 partners: largest record {largest:,} bytes")
    assert largest < 64 * 1024


def test_a_partner_with_20000_sales_never_writes_a_large_record(worker_gc: None) -> None:
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    lines = [enrolled("BIG", at="2025-01-01T00:00:00Z")]
    for i in range(20_000):
        minute = i * 20
        at = f"2025-{1 + minute // (60 * 24 * 28) % 12:02d}-{1 + minute // (60 * 24) % 28:02d}T" \
             f"{minute // 60 % 24:02d}:{minute % 60:02d}:00Z"
        lines.append(sale("BIG", f"O{i}", amount_cents=10_000, at=at))
    messages = [Message(topics.PARTNER_EVENTS, 0, o, encode(from_json_line(line))) for o, line in enumerate(lines)]
    largest = 0
    for i in range(0, len(messages), 2_000):
        result = fold_partition(CORE, part, messages[i:i + 2_000])
        largest = max(largest, max(len(k) + len(v) for k, v in _commit(part, store, result.dirty)))
    assert largest < 16 * 1024, largest
    fresh = PartitionState(0, store).load("BIG")              # read back from the records alone
    assert fresh is not None and fresh.seq == part.partners["BIG"].seq == 20_000
    assert fresh.head == part.partners["BIG"].head
    assert "O19999" in fresh.orders and "BIG-e19999" not in fresh.seen


def test_an_entry_newer_than_its_partners_committed_version_reads_as_the_value_it_replaced() -> None:
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    batch = part.store()
    batch.offset = 7
    st = PartnerState("P1")
    st.courses.add("K1")
    batch.put(st)
    _commit(part, store, batch.dirty)                 # committed: P1 at version 7, course K1
    # a crashed batch reached the changelog only up to an entry written at version 9 (no core):
    store[entry_key("P1", "courses", "K2")] = pickle.dumps((9, pickle.dumps(True), None))
    store[entry_key("P1", "alerts", "A1")] = pickle.dumps((9, pickle.dumps("new"), pickle.dumps("old")))
    fresh = PartitionState(0, store).load("P1")
    assert fresh is not None
    assert "K1" in fresh.courses and "K2" not in fresh.courses     # not committed: absent before
    assert fresh.alerts.get("A1") == "old"                         # not committed: the old value


def test_a_watermark_that_covers_missing_partner_state_refuses_to_run() -> None:
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    batch = part.store()
    batch.offset = part.meta.watermark = 41
    batch.put(PartnerState("P1"))
    _commit(part, store, batch.dirty)
    PartitionState(0, store).check()                   # consistent
    del store[core_key("P1")]                          # a changelog that lost the record
    with pytest.raises(StateCorrupt, match="watermark 41 covers partner 'P1' at version 41, but its stored "
                                           "state is missing"):
        PartitionState(0, store).check()
