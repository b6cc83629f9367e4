"""How a partition's stage-1 state is stored (processor.stream.partition_state): bounded records at
production sizes, a partial batch read back as the committed state, and the start-up self-check."""
from __future__ import annotations

import gc
import json
import pickle
from collections.abc import Callable, Iterator
from dataclasses import fields

import pytest

from processor import topics
from processor.codec import encode, from_json_line
from processor.domain.engine import Stage1
from processor.domain.state import HISTORY_FIELDS, PartnerState
from processor.programs import load_program
from processor.stream.folding import Message, fold_partition
from processor.stream.partition_state import (
    PartitionState,
    StateCorrupt,
    core_key,
    entry_key,
    meta_key,
)
from tests.unit.builders import enrolled, sale, training

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


# ---------------------------------------------------------------- only changed entries are written
def _entries_written(records: list[tuple[bytes, bytes]], name: str) -> list[object]:
    """The keys of the `name` entries among a batch's records."""
    return [key[4] for key in map(json.loads, (k for k, _ in records)) if key[1] == "e" and key[3] == name]


def test_entries_read_but_not_changed_are_not_written() -> None:
    # batch 1: six months of sales; batch 2: one sale in the last month, whose tier check reads the
    # trailing months (SPEC section 4): only the month it changes is written again
    lines = [enrolled("P1", at="2025-01-01T00:00:00Z"),
             training("P1", "C1", at="2025-01-02T00:00:00Z", certification=True)]
    lines += [sale("P1", f"O{m}", amount_cents=10_000, at=f"2025-{m:02d}-10T00:00:00Z") for m in range(1, 7)]
    lines.append(sale("P1", "O7", amount_cents=10_000, at="2025-06-20T00:00:00Z"))
    messages = [Message(topics.PARTNER_EVENTS, 0, o, encode(from_json_line(line))) for o, line in enumerate(lines)]
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    first = _commit(part, store, fold_partition(CORE, part, messages[:-1]).dirty)
    assert len(_entries_written(first, "months")) == 6
    part = PartitionState(0, store)                    # also from a restarted worker: the same
    second = _commit(part, store, fold_partition(CORE, part, messages[-1:]).dirty)
    *earlier, june = _entries_written(first, "months")
    assert _entries_written(second, "months") == [june]
    assert _entries_written(second, "courses") == []
    again = PartitionState(0, store).load("P1")
    assert again is not None and again.months[june].gross_cents == 20_000
    assert [again.months[m].gross_cents for m in earlier] == [10_000] * 5


def _batch(part: PartitionState, ops: dict[int, Callable[[PartnerState], None]], offsets: range) -> dict[str, int]:
    """Apply `ops[offset]` to partner P1 for each offset, as a message of a batch would."""
    batch = part.store()
    for offset in offsets:
        batch.offset = offset
        st = batch.get("P1") or PartnerState("P1")
        ops[offset](st)
        batch.put(st)
    return batch.dirty


def _set_alert(value: str) -> Callable[[PartnerState], None]:
    """Read, then replace (as the domain changes an entry): an entry set without being read is not
    loaded, so it is always written."""
    def op(st: PartnerState) -> None:
        st.alerts.get("A1")
        st.alerts["A1"] = value  # type: ignore[assignment]
    return op


def _read_alert_and_add_course(course: str) -> Callable[[PartnerState], None]:
    def op(st: PartnerState) -> None:
        st.alerts.get("A1")
        st.courses.add(course)
    return op


def test_a_changed_entry_is_written_and_one_changed_back_within_the_batch_is_not() -> None:
    ops = {0: _set_alert("P"), 1: _set_alert("X"), 2: _read_alert_and_add_course("K1"),
           3: _set_alert("Y"), 4: _set_alert("X")}
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    _commit(part, store, _batch(part, ops, range(0, 1)))
    assert _entries_written(_commit(part, store, _batch(part, ops, range(1, 2))), "alerts") == ["A1"]
    assert _entries_written(_commit(part, store, _batch(part, ops, range(2, 3))), "alerts") == []
    assert _entries_written(_commit(part, store, _batch(part, ops, range(3, 5))), "alerts") == []
    fresh = PartitionState(0, store).load("P1")
    assert fresh is not None and fresh.alerts.get("A1") == "X" and "K1" in fresh.courses


def _same_state(stored: PartnerState, reference: PartnerState) -> None:
    for f in fields(PartnerState):
        if f.name not in HISTORY_FIELDS:
            assert getattr(stored, f.name) == getattr(reference, f.name), f.name
    for name in HISTORY_FIELDS:
        want = getattr(reference, name).loaded()
        assert {k: getattr(stored, name).get(k) for k in want} == want, name


def test_a_stale_entry_equal_to_its_committed_value_is_still_written() -> None:
    """A crashed batch leaves an entry changed P -> X at version 3 (no core: not committed); the
    redo, one message longer, changes it P -> X -> P. Its new value equals the committed one, but
    the stale record `(3, X, P)` must be rewritten: left in place, it reads as X as soon as the
    partner commits a version >= 3 (the redo itself here)."""
    ops = {0: _set_alert("P"), 1: _read_alert_and_add_course("K1"), 2: _set_alert("X"),
           3: _read_alert_and_add_course("K2"), 4: _set_alert("P"), 5: _read_alert_and_add_course("K3")}
    store: dict[bytes, bytes] = {}
    part = PartitionState(0, store)
    _commit(part, store, _batch(part, ops, range(0, 2)))                   # committed: A1 = P at 1
    crashed = part.batch_records(_batch(part, ops, range(2, 4)))
    store.update((k, v) for k, v in crashed if json.loads(k)[1] == "e")    # died before the core
    assert pickle.loads(store[entry_key("P1", "alerts", "A1")])[0] == 3    # stale: (3, X, P)
    part = PartitionState(0, store)                                        # the restarted worker
    redo = _commit(part, store, _batch(part, ops, range(2, 5)))            # P1 at version 4 >= 3
    assert "A1" in _entries_written(redo, "alerts")
    _commit(part, store, _batch(part, ops, range(5, 6)))
    reference = PartnerState("P1")                                         # the same, without a crash
    for offset in sorted(ops):
        ops[offset](reference)
    stored = PartitionState(0, store).load("P1")
    assert stored is not None and stored.alerts.get("A1") == "P"
    _same_state(stored, reference)
