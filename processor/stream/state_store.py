"""The stages' state records in a Faust table: read from the local RocksDB, written changelog first,
and fenced against a writer that lost its partition.

The table (`partner-state`, `crosspartner-state`) is still Faust's: Faust creates its changelog
topic, recovers a partition's RocksDB from the changelog when it is assigned, and keeps the offset
up to which the local store holds the changelog. But the stages write it themselves, for one
guarantee Faust's own table writes cannot give (STACK.md: they are sent in the background, a failed
send kills the producer while RocksDB already holds the value): a batch's records are sent to the
changelog and *awaited*; only when all are delivered are they written to RocksDB, in one atomic
write batch. A record that cannot be delivered stops the worker before the local store, the
partition's watermark or the input offsets move, so the store, the changelog and the committed
offsets never disagree silently (`partition_state.py` says how a partial batch in the changelog is
read back).

Fencing. The local broker has no transactions, so nothing stops a worker that was paused past its
session timeout (a long GC or VM stall, SIGSTOP) from waking in the middle of a batch and writing
state records after its partition's new owner has recovered the changelog and written newer ones.
The changelog would then end with the old owner's older records, and the next recovery, which keeps
the last record of each key, would restore them over the newer ones (two owners' states mixed: a
divergence a replay shows; the chaos `pause` fault found it). So:

- Every record's value starts with its writer's *epoch* (`stamp`): the consumer group generation in
  which the writer was assigned the partition, and never less than one more than the highest epoch
  the partition's store has seen (`writer_epoch`). A new owner's epoch is always above the old one's.
- Once a record of some epoch is in a partition's changelog, records of a lower epoch after it are
  stale: they were written by an owner that had already lost the partition. Every restore applies a
  stretch of changelog in log order and skips those (`fenced_merge`); the highest epoch seen is the
  partition's *fence*, kept in the store with the records (`FENCE_KEY`). Records of an older owner
  that precede the new owner's first record are not stale: they continue the committed state (a
  batch that reached the changelog but whose offsets were not committed, which `partition_state.py`
  reads back like any partial batch).
- A writer checks where its records landed: right after the changelog offset its local store holds.
  Anything else in between was written by another writer (a zombie's late batch, or a recovery that
  stopped short of the end): the local store does not hold it, so the writer reads that stretch of
  the changelog back and applies it by the same rule (its own records included), and tells its
  caller to drop its live state (`write` returns False), so the next batch reads the merged store.
  A writer whose store has seen a higher epoch than its own has lost the partition: it writes
  nothing (and returns False).

Records written before epochs existed read as epoch -1.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from processor.stream import metrics
from processor.stream.delivery import deliver
from processor.stream.folding import OutRecord
from processor.stream.log_check import reading

log = logging.getLogger(__name__)

#: A stamped value: this byte (never the first byte of a pickle, which is 0x80), then the epoch as
#: 8 bytes big-endian, then the record's own bytes.
EPOCH_MARK = 0xFE
_HEADER = 9


def stamp(epoch: int, value: bytes) -> bytes:
    return bytes((EPOCH_MARK,)) + epoch.to_bytes(8, "big") + value


def epoch_of(value: bytes) -> int:
    """The writer's epoch of a stored value (-1: written before epochs)."""
    return int.from_bytes(value[1:_HEADER], "big") if value[:1] == b"\xfe" else -1


def payload(value: bytes) -> bytes:
    return value[_HEADER:] if value[:1] == b"\xfe" else value


#: Per partition of a fenced table: the highest writer epoch its changelog has shown so far.
FENCE_KEY = b'["fence"]'


def fence_of(raw: bytes | None) -> int:
    return -1 if raw is None else int(raw)


def fenced_merge(records: Iterable[tuple[bytes, bytes | None]], fence: int
                 ) -> tuple[dict[bytes, bytes | None], int, int]:
    """What a stretch of changelog `records` (in log order) changes in a store whose fence is
    `fence`: each record applies unless a higher epoch came before it. A tombstone always applies.
    Returns the changes (the new fence included), how many stale records were skipped, and the new
    fence."""
    changes: dict[bytes, bytes | None] = {}
    stale = 0
    for key, value in records:
        if value is not None:
            epoch = epoch_of(value)
            if epoch < fence:
                stale += 1
                continue
            fence = epoch
        changes[key] = value
    changes[FENCE_KEY] = str(fence).encode()
    return changes, stale, fence


def writer_epoch(generation: int, fence: int) -> int:
    """The epoch a worker writes a partition's records with, fixed when it takes the partition:
    its consumer group generation, and above the partition's fence (a generation that started again
    from 0 still fences the old writer)."""
    return max(generation, fence + 1)


class FencedStore(RocksDBStore):
    """Faust's RocksDB store whose changelog restore skips the records of an owner that had lost
    the partition (`fenced_merge`). Tables use it with `store="fenced://"`."""

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        tp_offsets: dict[TP, int] = {}
        for event in batch:
            msg = event.message
            if msg.tp not in tp_offsets:
                held = self.persisted_offset(msg.tp)
                tp_offsets[msg.tp] = -1 if held is None else held
            if msg.offset <= tp_offsets[msg.tp]:
                continue        # the store holds it already (a take-over read it back first)
            tp_offsets[msg.tp] = msg.offset
            by_partition.setdefault(msg.partition, []).append((msg.key, msg.value))
        for partition, records in by_partition.items():
            db = self._db_for_partition(partition)
            changes, stale, fence = fenced_merge(records, fence_of(db.get(FENCE_KEY)))
            _write(db, changes)
            if stale:
                metrics.STALE_STATE_RECORDS.inc(stale)
                log.warning("%s[%d]: %d changelog records of a writer that had lost the partition skipped "
                            "while restoring (epoch below %d)", self.table.name, partition, stale, fence)
        for tp, offset in tp_offsets.items():
            if offset >= 0:
                self.set_persisted_offset(tp, offset)


def _write(db: Any, changes: dict[bytes, bytes | None]) -> None:
    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in changes.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)


class TableRecords:
    """The records of one partition of a Faust table (store `fenced://`)."""

    def __init__(self, app: Any, table: Any, partition: int, limit: int) -> None:
        self._app, self._table, self.partition, self._limit = app, table, partition, limit
        self._topic = table.changelog_topic.get_topic_name()

    def _db(self) -> Any:
        return self._table.data._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        value = self._db().get(key)
        return None if value is None else payload(bytes(value))

    async def take_over(self, generation: int) -> int:
        """Make this worker the partition's writer; returns its epoch. Call it once per assignment,
        before reading any state: it sends a marker record with the new epoch to the changelog, then
        reads everything between the offset the local store holds and the marker (what a short
        restore missed, a late batch of the previous owner) and applies it by the fence rule. So the
        state read afterwards is the whole changelog up to the marker, and every record of an older
        epoch after the marker is stale. If the changelog shows a higher epoch than the one chosen
        (the local store's fence was behind), the marker is sent again above it."""
        tp = TP(self._topic, self.partition)
        for _ in range(3):
            epoch = writer_epoch(generation, fence_of(self._db().get(FENCE_KEY)))
            held = self._table.data.persisted_offset(tp)
            expected = 0 if held is None else held + 1
            marker = (FENCE_KEY, stamp(epoch, b""))
            sent = await deliver(self._app, [OutRecord(self._topic, *marker)], partition=self.partition,
                                 limit=self._limit, what="state")
            at = sent[0].offset
            stretch = [marker] if at == expected else await read_stretch(
                self._app.conf.broker, self._topic, self.partition, expected, at)
            changes, stale, fence = fenced_merge(stretch, fence_of(self._db().get(FENCE_KEY)))
            _write(self._db(), changes)
            self._table.data.set_persisted_offset(tp, at)
            if len(stretch) > 1:
                metrics.STALE_STATE_RECORDS.inc(stale)
                log.warning("%s[%d]: taking the partition over (epoch %d), %d changelog records the restore "
                            "had not applied were read back (offsets %d..%d; %d stale records skipped)",
                            self._topic, self.partition, epoch, len(stretch) - 1, expected, at - 1, stale)
            if fence <= epoch:
                return epoch
            log.warning("%s[%d]: the changelog shows epoch %d above this worker's %d; taking over again",
                        self._topic, self.partition, fence, epoch)
        return epoch

    async def write(self, records: list[tuple[bytes, bytes]], epoch: int) -> bool:
        """Changelog first (all delivered), then the local store in one write, then the offset of
        the changelog the local store now holds (Faust's recovery resumes after it). False when
        this writer has lost the partition (nothing written) or another writer's records were in
        the way (the module docstring): the local store then holds that stretch of changelog
        merged by the fence rule, and the caller must drop its live state."""
        if not records:
            return True
        db = self._db()
        fence = fence_of(db.get(FENCE_KEY))
        if epoch < fence:
            metrics.STALE_STATE_RECORDS.inc(len(records))
            log.warning("%s[%d]: not writing %d state records: this worker's epoch %d is below the "
                        "partition's fence %d (it was assigned to another worker meanwhile)",
                        self._topic, self.partition, len(records), epoch, fence)
            return False
        tp = TP(self._topic, self.partition)
        held = self._table.data.persisted_offset(tp)
        expected = 0 if held is None else held + 1
        stamped = [(k, stamp(epoch, v)) for k, v in records]
        sent = await deliver(self._app, [OutRecord(self._topic, k, v) for k, v in stamped],
                             partition=self.partition, limit=self._limit, what="state")
        offsets = sorted(m.offset for m in sent)
        last = offsets[-1]
        if offsets[0] == expected and last - expected + 1 == len(offsets):
            changes: dict[bytes, bytes | None] = dict(stamped)
            changes[FENCE_KEY] = str(epoch).encode()
            _write(self._db(), changes)
            self._table.data.set_persisted_offset(tp, last)
            return True
        stretch = await read_stretch(self._app.conf.broker, self._topic, self.partition, expected, last)
        changes, stale, fence = fenced_merge(stretch, fence_of(self._db().get(FENCE_KEY)))
        _write(self._db(), changes)
        self._table.data.set_persisted_offset(tp, last)
        metrics.STALE_STATE_RECORDS.inc(stale)
        log.warning("%s[%d]: changelog offsets %d..%d hold %d records of another writer besides this "
                    "batch's %d (epoch %d): applied that stretch by the fence rule (%d stale records "
                    "skipped, fence now %d) and reloading the partition's state", self._topic,
                    self.partition, expected, last, len(stretch) - len(offsets), len(offsets), epoch,
                    stale, fence)
        return False


async def read_stretch(brokers: Any, topic: str, partition: int, first: int, last: int,
                       timeout: float = 30.0) -> list[tuple[bytes, bytes | None]]:
    """The (key, value) records of `topic[partition]` from offset `first` to `last`, in order."""
    bootstrap = [f"{url.host}:{url.port or 9092}" for url in brokers]
    out: list[tuple[bytes, bytes | None]] = []
    async with reading(bootstrap, topic, partition, first) as (consumer, tp):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                if rec.offset <= last:
                    out.append((rec.key, rec.value))
                if rec.offset >= last:
                    return out
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{topic}[{partition}]: could not read changelog offsets {first}..{last} "
                                   f"within {timeout:.0f} s")
