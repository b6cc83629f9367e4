"""The batch commit order, written once for both stages: deliver, state, watermark, offset.

A stage folds a batch per partition, then commits it here:

1. **deliver**: every output record of the batch is sent and awaited (`delivery.deliver`), so
   nothing a state change depends on is lost in a producer buffer;
2. **rewind**: a partition whose fold stopped at a gap in its offsets (`folding.Contiguous`) is read
   again from the gap (`rewind.Rewinder`), its watermark the last offset it applied;
3. **state**: a partition this worker still holds writes its state records, to the changelog first
   (awaited) and then the local store in one write (`state_store.TableRecords.write`); a partition
   rebalanced away meanwhile writes nothing (its new owner redoes the batch from the stored
   watermark, and the outputs it repeats carry the same ids);
4. **watermark**: the partition's meta record, with the watermark, is the last of its records: the
   partition's commit point (`partition_state.py`);
5. **offset**: Faust commits the consumer offsets once the agent has taken the next batch
   (`batching.take_batches` acks a batch after it is committed here), never ahead of the state:
   a crash anywhere above redoes the batch from the watermark, and the state knows what it applied.

Each stage says what its partitions write (`PartitionCommit`); the order is this module's.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processor.stream.delivery import deliver
from processor.stream.folding import OutRecord
from processor.stream.rewind import Rewinder
from processor.stream.state_store import TableRecords


@dataclass
class PartitionCommit:
    """One partition's part of a folded batch; a stage says what its partitions write by overriding
    `state_records` (and `written`, `lost` when it keeps live state between batches)."""
    tp: Any                        # the input topic-partition
    epoch: int                     # the writer epoch the partition is held with (`state_store.py`)
    store: TableRecords            # where its state records go
    watermark: int                 # the last offset the fold applied
    jumped_to: int | None          # where the fold met a gap in the offsets, if it did

    def state_records(self, watermark: int) -> list[tuple[bytes, bytes]]:
        """The records to write, the meta (with `watermark`) last; none if nothing changed."""
        raise NotImplementedError

    def written(self, ok: bool) -> None:
        """The records are durable. Not `ok`: the store now holds other records too (another
        writer's, merged by the fence rule) or this writer lost the partition: the live state must
        be read again."""

    def lost(self) -> None:
        """The partition went to another worker before its state was written."""


async def commit_batch(app: Any, rewinder: Rewinder, outputs: Sequence[OutRecord],
                       partitions: Sequence[PartitionCommit], limit: int) -> None:
    """Commit a folded batch in the order of the module docstring."""
    await deliver(app, outputs, limit=limit)
    for part in partitions:
        watermark = part.watermark
        if part.jumped_to is not None:
            watermark = await rewinder.rewind(part.tp, watermark, part.jumped_to)
        if part.tp not in app.consumer.assignment():
            part.lost()
            continue
        records = part.state_records(watermark)
        if records:
            part.written(await part.store.write(records, part.epoch))
