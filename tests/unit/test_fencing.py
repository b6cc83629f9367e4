"""Fencing a state writer that lost its partition (`processor/stream/state_store.py`).

The scenario the `pause` fault produces: worker A owns a partition and is paused in the middle of a
batch, after folding it and before writing its state records. The group moves the partition to
worker B, which restores the changelog (without A's batch), folds on and writes its own records.
A wakes up and writes its stale batch's records: before B's first write, or among B's. A later
owner C restores the whole changelog. With the fence (records of a lower epoch after a higher one
are skipped; writers that find others' records in their way merge them and reload) both B's live
state and C's restore are the replay's, partner for partner. With Faust's plain restore (the last
record wins) some runs are not, which is why the fence exists (and shows this test can fail).
"""
from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor import topics
from processor.codec import encode, to_json_line
from processor.simulation import simulate
from processor.stream.folding import Message, PartitionState, fold_partition
from processor.stream.state_store import (
    FENCE_KEY,
    epoch_of,
    fence_of,
    fenced_merge,
    payload,
    stamp,
    writer_epoch,
)
from tests.unit.test_properties import (
    LIVE_STAGE1,
    SETTINGS,
    file_scenarios,
    recorded_log,
    state_summary,
    summary,
)


class Worker:
    """A worker's side of one partition of the fenced table, as `state_store.TableRecords` and
    `FencedStore` handle it, over a shared changelog (a list): its local store (stamped values),
    the changelog offset the store holds, and the epoch it took the partition over with. Faust's
    restore may stop `short` of the changelog's end (the local broker's end offsets are short)."""

    def __init__(self, changelog: list[tuple[bytes, bytes]], generation: int, fenced: bool = True,
                 short: int = 0) -> None:
        self.changelog, self.fenced = changelog, fenced
        self.data: dict[bytes, bytes | None] = {}
        self.held = -1
        self.catch_up(len(changelog) - 1 - short)          # Faust's restore
        self.epoch = writer_epoch(generation, fence_of(self.data.get(FENCE_KEY)))
        if fenced:                                          # TableRecords.take_over
            self.changelog.append((FENCE_KEY, stamp(self.epoch, b"")))
            self.catch_up(len(changelog) - 1)
        self.part = self.reload()

    def get(self, key: bytes) -> bytes | None:          # what PartitionState reads
        value = self.data.get(key)
        return None if value is None else payload(value)

    def reload(self) -> PartitionState:
        self.part = PartitionState(0, self)
        self.part.check()
        return self.part

    def catch_up(self, last: int) -> None:
        stretch = self.changelog[self.held + 1:last + 1]
        if self.fenced:
            changes, _, _ = fenced_merge(stretch, fence_of(self.data.get(FENCE_KEY)))
            self.data.update(changes)
        else:
            self.data.update(stretch)                    # Faust's own restore: the last record wins
        self.held = max(self.held, last)

    def write(self, records: list[tuple[bytes, bytes]]) -> bool:
        """`TableRecords.write`: False when fenced, or when another writer's records were in the way
        (the stretch is then merged and the live state must be reloaded)."""
        if self.fenced and self.epoch < fence_of(self.data.get(FENCE_KEY)):
            return False
        stamped = [(k, stamp(self.epoch, v)) for k, v in records]
        first = len(self.changelog)
        self.changelog += stamped
        if first == self.held + 1:
            self.data.update(stamped)
            self.data[FENCE_KEY] = str(self.epoch).encode()
            self.held = len(self.changelog) - 1
            return True
        self.catch_up(len(self.changelog) - 1)
        return False


def run_zombie(log: list[bytes], rnd: random.Random, fenced: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold `log` (one partition) with a zombie writer as in the module docstring: A folds on after
    it lost the partition and writes one or two late batches at random points among B's writes;
    B's restore may stop short of the changelog's end. Returns the state of the new owner at the
    end and the state a restore of the whole changelog gives."""
    def messages(first: int) -> list[Message]:
        last = min(len(log), first + rnd.choice([1, 3, 10, 50]))
        return [Message(topics.PARTNER_EVENTS, 0, o, log[o]) for o in range(first, last)]

    def fold(w: Worker) -> tuple[Any, list[tuple[bytes, bytes]]]:
        result = fold_partition(LIVE_STAGE1, w.part, messages(w.part.meta.watermark + 1))
        return result, w.part.batch_records(result.dirty)

    def commit(w: Worker, result: Any, records: list[tuple[bytes, bytes]]) -> None:
        if w.write(records):
            w.part.committed(result.dirty)
        else:
            w.reload()

    changelog: list[tuple[bytes, bytes]] = []
    a = Worker(changelog, generation=1, fenced=fenced)
    split = rnd.randint(1, max(1, len(log) - 2))        # A owns the partition up to about here
    while a.part.meta.watermark + 1 < split:
        commit(a, *fold(a))
    late = [fold(a)]                                    # A folds a batch and is paused before writing
    b = Worker(changelog, generation=2, fenced=fenced, short=rnd.choice([0, 0, 3, 30]))
    assert b.epoch > a.epoch
    wakes = sorted(rnd.randint(0, 3) for _ in range(rnd.choice([1, 2])))   # after B's nth write
    writes = 0
    while b.part.meta.watermark + 1 < len(log) or wakes:
        while wakes and wakes[0] <= writes:
            wakes.pop(0)
            commit(a, *late.pop())                      # A wakes up and writes a late batch
            late.append(fold(a))                        # and folds on, still thinking it owns it
        if b.part.meta.watermark + 1 < len(log):
            commit(b, *fold(b))
        writes += 1
    c = Worker(changelog, generation=3, fenced=fenced)  # a later owner restores it all
    return states(b), states(c)


def states(w: Worker) -> dict[str, Any]:
    part = w.reload()
    return {pid: state_summary(part.load(pid)) for pid in part.member_ids}


def one_partition_log(lines: list[str]) -> tuple[list[bytes], dict[str, Any]]:
    log, doc = recorded_log(lines)
    return [encode(e) for e in log], doc


@SETTINGS
@given(file_scenarios(self_dealing=False), st.randoms(use_true_random=False))
def test_a_zombie_writers_stale_records_never_reach_a_restored_state(case, rnd):
    scenario, lines = case
    log, doc = one_partition_log(lines)
    owner, restored = run_zombie(log, rnd, fenced=True)
    for got in (owner, restored):
        assert sorted(got) == sorted(doc["partners"])
        for pid in doc["partners"]:
            assert got[pid] == summary(doc["partners"][pid]), pid


def test_without_the_fence_the_same_scenario_diverges():
    """The check above can fail: with the last record winning, some seeds restore a mixed state."""
    lines = [to_json_line(e) for e in itertools.islice(simulate(seed=7, partners=6), 400)]
    log, doc = one_partition_log(lines)
    diverged = 0
    for seed in range(30):
        try:
            _, restored = run_zombie(log, random.Random(seed), fenced=False)
        except Exception:                             # noqa: BLE001 - a state that refuses itself
            diverged += 1
            continue
        if any(restored.get(pid) != summary(doc["partners"][pid]) for pid in doc["partners"]):
            diverged += 1
    assert diverged > 0


def test_after_a_newer_epoch_older_records_are_stale_and_before_it_they_apply():
    e1, e2 = stamp(1, b"one"), stamp(2, b"two")
    changes, stale, fence = fenced_merge([(b"k", e1), (b"j", e1), (b"k", e2), (b"j", e1), (b"k", e1)], -1)
    assert changes == {b"k": e2, b"j": e1, FENCE_KEY: b"2"} and stale == 2 and fence == 2
    changes, stale, fence = fenced_merge([(b"k", e1)], 2)          # against the store's fence
    assert changes == {FENCE_KEY: b"2"} and stale == 1
    changes, _, _ = fenced_merge([(b"k", e2), (b"k", None)], -1)   # a tombstone always applies
    assert changes[b"k"] is None
    legacy = b"\x80\x05legacy"                                       # written before epochs
    assert epoch_of(legacy) == -1 and payload(legacy) == legacy
    assert fenced_merge([(b"k", legacy), (b"k", stamp(0, b"x"))], -1)[0][b"k"] == stamp(0, b"x")


@pytest.mark.parametrize("generation,fence,expected", [(5, -1, 5), (5, 3, 5), (5, 5, 6), (0, 9, 10)])
def test_a_writer_epoch_is_above_the_fence(generation, fence, expected):
    assert writer_epoch(generation, fence) == expected


def test_the_worker_tables_restore_through_the_fenced_store(tmp_path):
    """Both stage tables really use `FencedStore` (a bare "fenced://" URL is falsy in yarl, and
    Faust then silently took the app's plain RocksDB store: found by the chaos run)."""
    code = ("import processor.stream.app as a\n"
            "print([(type(t.data).__name__, t.data.partition_path(0).name) "
            "for t in (a.partner_table, a.crosspartner_table)])")
    env = {**os.environ, "INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WORKER_DIR": str(tmp_path / "w")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(
        [("FencedStore", "partner-state-0.db"), ("FencedStore", "crosspartner-state-0.db")])
